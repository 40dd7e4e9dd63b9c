"""The event contract of topic ``devices`` (shared/DESIGN.md), as one validating parser.

``parse(value, max_timestamp)`` returns the event as a plain tuple ``(timestamp, id,
antenna_id, bytes, app)`` (equal to an :class:`Event`), or the reject reason as a string:
a stable, distinct code per kind of breach (``missing_field:id``, ``bad_uuid:antenna_id``,
...), so rejects can be counted and explained by reason. Plain tuples and strings keep the
per-message cost small: with librdkafka, this parse is most of what bounds ingestion
(README, Benchmarks).

Both ingestors validate with this one function, so whatever a producer sends lands in both
sinks as the same values or in both sinks' rejects with the same reason. It never raises:
every input of any size, nesting or encoding gets an answer, and every value it accepts can
be stored by both sinks (no NUL or lone surrogate in text; numbers within the columns').
"""

from __future__ import annotations

import contextlib
import json
import math
import re
import sys
from collections.abc import Iterator
from typing import Any, NamedTuple

import orjson

FIELDS = ("timestamp", "id", "antenna_id", "bytes", "app")
MISSPELT_TIMESTAMP = "timestmap"
BYTES_MAX = 2**32 - 1
"""Largest ``bytes`` of one event (4 GiB - 1: no antenna reports more in one event).

The bound is what keeps the marts' sums from overflowing: they are bigint (at most
2**63 - 1), and 2**31 events of 2**32 - 1 bytes add up to 2**63 - 2**31, which fits. So a
sum of valid events can overflow only with more than 2**31 (2.1 billion) events in one
group of one mart, e.g. one hour for one antenna, device or app: 600,000 events a second
for a whole hour from one key."""
# Accepted event times: 2000-01-01T00:00:00Z (inclusive) to 2100-01-01T00:00:00Z (exclusive).
TIMESTAMP_MIN = 946_684_800
TIMESTAMP_MAX = 4_102_444_800
MAX_DEPTH = 1024
"""Deepest nesting of arrays and objects accepted (orjson's own limit)."""
_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")

# Every reason code the parser can give, for documentation and tests.
REASONS = (
    "empty_message",
    "not_json",
    "too_deeply_nested",
    "not_object",
    *(f"missing_field:{f}" for f in FIELDS),
    *(f"mistyped_field:{f}" for f in FIELDS),
    "negative_bytes",
    "bytes_out_of_range",
    "bad_uuid:id",
    "bad_uuid:antenna_id",
    "timestamp_out_of_range",
    "timestamp_in_future",
    "empty_app",
    "nul_character:app",
    "lone_surrogate:app",
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


def future_bound(record_ms: int | None, clock_seconds: float, skew: int) -> int:
    """The latest event time accepted for a message: ``min(record time, our clock) + skew``.

    Both ingestors must decide alike for the same message, whenever each of them reads it
    (one may be hours behind the other). The Kafka record's timestamp (CreateTime, set by
    the producer, or LogAppendTime, set by the broker) is the same for every reader, so it
    is the reference; our own clock only caps it, so that a producer whose clock runs ahead
    cannot push events into the future with its record times. A record without a timestamp
    (-1 or None: old message formats) falls back to our clock."""
    clock = int(clock_seconds)
    if record_ms is not None and 0 <= record_ms < clock * 1000:
        return record_ms // 1000 + skew
    return clock + skew


def _is_int(value: Any) -> bool:
    # bool is an int subclass in Python; JSON true/false is not a number here
    return type(value) is int


def _is_huge_number(value: Any) -> bool:
    """An integer literal too large for 64 bits reaches us as a float (or inf)."""
    return type(value) is float and abs(value) >= 2**63


def parse(
    value: bytes | None, max_timestamp: int = TIMESTAMP_MAX
) -> tuple[int, str, str, int, str] | str:
    """Validate one Kafka message value against the contract; an event time after
    ``max_timestamp`` (:func:`future_bound`) is ``timestamp_in_future``."""
    if not value:
        return "empty_message"
    unusual = False
    try:
        obj = orjson.loads(value)
    except orjson.JSONDecodeError:
        obj = _load_unusual(value)
        if type(obj) is Reject:
            return str(obj)
        unusual = True
    # all in one function: on the hot path, one call more costs about 5 % of the parse
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
    if ts > max_timestamp:
        return "timestamp_in_future"
    # a stream has few distinct devices and antennas: each validated one is remembered
    device = _CANONICAL.get(device_id)
    if device is None:
        if len(device_id) != 36 or not _UUID.fullmatch(device_id):
            return "bad_uuid:id"
        device = _remember(device_id)
    antenna = _CANONICAL.get(antenna_id)
    if antenna is None:
        if len(antenna_id) != 36 or not _UUID.fullmatch(antenna_id):
            return "bad_uuid:antenna_id"
        antenna = _remember(antenna_id)
    if nbytes < 0:
        return "negative_bytes"
    if nbytes > BYTES_MAX:
        return "bytes_out_of_range"
    if not app.strip():
        return "empty_app"
    # PostgreSQL text cannot hold NUL (the lake could: the layers would differ)
    if "\x00" in app:
        return "nul_character:app"
    # only the standard library's parser lets an escaped lone surrogate through; neither
    # UTF-8 (PostgreSQL) nor Arrow strings can hold one
    if unusual and _has_lone_surrogate(app):
        return "lone_surrogate:app"
    return (ts, device, antenna, nbytes, app)


_CANONICAL: dict[str, str] = {}
"""Valid UUIDs seen -> their lower-case form (one shared string each): checking and
lowering two UUIDs was a third of a valid event's parse (1.85 -> 1.23 us on this machine)."""
CANONICAL_LIMIT = 20_000
"""UUIDs remembered at most (~5 MiB: two strings and a dict entry each); past it the
memory starts again (a network with more devices than that, or random UUIDs)."""


def _remember(uuid: str) -> str:
    if len(_CANONICAL) >= CANONICAL_LIMIT:
        _CANONICAL.clear()
    canonical = _CANONICAL[uuid] = uuid.lower()
    return canonical


def _load_unusual(value: bytes) -> Any:
    """What orjson refuses, told apart: numbers beyond a double (1e400, a 5,000-digit
    integer) are valid JSON whose field is out of range; escaped lone surrogates
    (``"\\ud800"``) are valid JSON whose text no sink can store; nesting deeper than
    :data:`MAX_DEPTH` has its own reason; everything else (bad UTF-8, a byte order mark,
    NaN, Infinity, syntax) is not JSON. Rare, so the standard library's slower parser is
    fine here; it must not recurse past Python's limit nor read integers of any length.
    Returns the document, or the :class:`Reject`."""
    try:
        text = value.decode("utf-8")  # strict: no BOM sniffing, no UTF-16, no surrogates
    except UnicodeDecodeError:
        return Reject("not_json")
    if _deeper_than(text, MAX_DEPTH):
        return Reject("too_deeply_nested")
    try:
        with _recursion_room(MAX_DEPTH + 64):
            return json.loads(text, parse_int=_integer, parse_constant=_not_json_constant)
    except RecursionError:  # not reached (the depth is checked), but never raise
        return Reject("too_deeply_nested")
    except ValueError:
        return Reject("not_json")


# -- helpers of the unusual path ------------------------------------------------------------

_BRACKETS_AND_STRINGS = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"|[\[\]{}]', re.DOTALL)


def _deeper_than(text: str, limit: int) -> bool:
    """Whether arrays and objects nest deeper than ``limit`` (brackets inside strings do
    not count), without recursion."""
    depth = 0
    for match in _BRACKETS_AND_STRINGS.finditer(text):
        token = match.group()
        if token == "[" or token == "{":
            depth += 1
            if depth > limit:
                return True
        elif token == "]" or token == "}":
            depth -= 1
    return False


@contextlib.contextmanager
def _recursion_room(levels: int) -> Iterator[None]:
    """Python 3.11's json decoder counts its nesting against the interpreter's recursion
    limit (1000): give it room for :data:`MAX_DEPTH` levels, then restore the limit."""
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(limit + levels)
    try:
        yield
    finally:
        sys.setrecursionlimit(limit)


def _integer(text: str) -> int | float:
    """An integer literal; one too long to convert (Python refuses over 4,300 digits) is
    far out of any range anyway: infinity with its sign, like orjson's 1e400."""
    if len(text) <= 40:
        return int(text)
    return -math.inf if text.startswith("-") else math.inf


def _not_json_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _has_lone_surrogate(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False
