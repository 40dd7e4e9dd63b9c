"""The event contract of topic ``devices`` (shared/DESIGN.md), as one validating parser.

``parse(value)`` returns the event as a plain tuple ``(timestamp, id, antenna_id, bytes,
app)`` (equal to an :class:`Event`), or the reject reason as a string: a stable, distinct
code per kind of breach (``missing_field:id``, ``bad_uuid:antenna_id``, ...), so rejects
can be counted and explained by reason. It never raises. Plain tuples and strings keep
the per-message cost small: kafka-python already bounds ingestion (shared/KNOWN.md).
"""

from __future__ import annotations

import json
import re
from typing import Any, NamedTuple

import orjson

FIELDS = ("timestamp", "id", "antenna_id", "bytes", "app")
MISSPELT_TIMESTAMP = "timestmap"
BIGINT_MAX = 2**63 - 1
# Accepted event times: 2000-01-01T00:00:00Z (inclusive) to 2100-01-01T00:00:00Z (exclusive).
TIMESTAMP_MIN = 946_684_800
TIMESTAMP_MAX = 4_102_444_800
_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")

# Every reason code the parser can give, for documentation and tests.
REASONS = (
    "empty_message",
    "not_json",
    "not_object",
    *(f"missing_field:{f}" for f in FIELDS),
    *(f"mistyped_field:{f}" for f in FIELDS),
    "negative_bytes",
    "bytes_out_of_range",
    "bad_uuid:id",
    "bad_uuid:antenna_id",
    "timestamp_out_of_range",
    "empty_app",
)


class Event(NamedTuple):
    """A valid event: epoch seconds, lower-case canonical UUIDs, bytes and app."""

    timestamp: int
    id: str
    antenna_id: str
    bytes: int
    app: str


class Reject(str):
    """Why a message breaks the contract (one of :data:`REASONS`)."""

    __slots__ = ()


def _is_int(value: Any) -> bool:
    # bool is an int subclass in Python; JSON true/false is not a number here
    return type(value) is int


def _is_huge_number(value: Any) -> bool:
    """An integer literal too large for 64 bits reaches us as a float (or inf)."""
    return type(value) is float and (value != value or abs(value) >= 2**63)


def parse(value: bytes | None) -> tuple[int, str, str, int, str] | str:
    """Validate one Kafka message value against the contract."""
    if not value:
        return "empty_message"
    try:
        obj = orjson.loads(value)
    except orjson.JSONDecodeError:
        # orjson refuses numbers beyond a double (1e400) and NaN; the standard library
        # reads them, so such a message gets an "out of range" reason, not "not JSON"
        try:
            obj = json.loads(value)
        except ValueError:
            return "not_json"
    if type(obj) is not dict:
        return "not_object"

    ts = obj.get("timestamp")
    if ts is None:
        ts = obj.get(MISSPELT_TIMESTAMP)
    if ts is None:
        return "missing_field:timestamp"
    device_id = obj.get("id")
    if device_id is None:
        return "missing_field:id"
    antenna_id = obj.get("antenna_id")
    if antenna_id is None:
        return "missing_field:antenna_id"
    nbytes = obj.get("bytes")
    if nbytes is None:
        return "missing_field:bytes"
    app = obj.get("app")
    if app is None:
        return "missing_field:app"

    if not _is_int(ts):
        if _is_huge_number(ts):
            return "timestamp_out_of_range"
        return "mistyped_field:timestamp"
    if type(device_id) is not str:
        return "mistyped_field:id"
    if type(antenna_id) is not str:
        return "mistyped_field:antenna_id"
    if not _is_int(nbytes):
        if _is_huge_number(nbytes):
            return "bytes_out_of_range" if nbytes > 0 else "negative_bytes"
        return "mistyped_field:bytes"
    if type(app) is not str:
        return "mistyped_field:app"

    if not TIMESTAMP_MIN <= ts < TIMESTAMP_MAX:
        return "timestamp_out_of_range"
    if len(device_id) != 36 or not _UUID.fullmatch(device_id):
        return "bad_uuid:id"
    if len(antenna_id) != 36 or not _UUID.fullmatch(antenna_id):
        return "bad_uuid:antenna_id"
    if nbytes < 0:
        return "negative_bytes"
    if nbytes > BIGINT_MAX:
        return "bytes_out_of_range"
    if not app.strip():
        return "empty_app"
    return (ts, device_id.lower(), antenna_id.lower(), nbytes, app)
