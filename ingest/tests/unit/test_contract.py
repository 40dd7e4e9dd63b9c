"""The event contract: every kind of breaker has its own reason; valid events parse exactly."""

from __future__ import annotations

import json

import pytest

from antenna_elt.contract import REASONS, Event, Reject, parse

DEVICE = "00000000-0000-0000-0000-000000000004"
ANTENNA = "6f1c3b2a-9d4e-4f5a-8b7c-0123456789ab"
VALID = {
    "timestamp": 1_764_000_000,
    "id": DEVICE,
    "antenna_id": ANTENNA,
    "bytes": 1234,
    "app": "SKYPE",
}


def encode(obj: object) -> bytes:
    # the standard library writes integers of any size; orjson stops at 64 bits
    return json.dumps(obj).encode()


def without(field: str) -> bytes:
    return encode({k: v for k, v in VALID.items() if k != field})


def with_(**changes: object) -> bytes:
    return encode({**VALID, **changes})


# One message per breach, each with the one reason it must get.
BREAKERS: list[tuple[str, bytes | None]] = [
    ("empty_message", b""),
    ("empty_message", None),
    ("not_json", b"{not json"),
    ("not_json", b"\xff\xfe garbage"),
    ("not_object", b"[1, 2, 3]"),
    ("not_object", b'"a string"'),
    ("not_object", b"null"),
    ("missing_field:timestamp", without("timestamp")),
    ("missing_field:id", without("id")),
    ("missing_field:antenna_id", without("antenna_id")),
    ("missing_field:bytes", without("bytes")),
    ("missing_field:app", without("app")),
    ("missing_field:id", with_(id=None)),
    ("mistyped_field:timestamp", with_(timestamp="1764000000")),
    ("mistyped_field:timestamp", with_(timestamp=1_764_000_000.5)),
    ("mistyped_field:timestamp", with_(timestamp=True)),
    ("mistyped_field:id", with_(id=42)),
    ("mistyped_field:antenna_id", with_(antenna_id=["x"])),
    ("mistyped_field:bytes", with_(bytes="1234")),
    ("mistyped_field:bytes", with_(bytes=12.5)),
    ("mistyped_field:app", with_(app=7)),
    ("negative_bytes", with_(bytes=-1)),
    ("bytes_out_of_range", with_(bytes=2**63)),
    ("bytes_out_of_range", with_(bytes=2**64 + 1)),
    (
        "bytes_out_of_range",
        b'{"timestamp": 1764000000, "id": "%s", "antenna_id": "%s", "bytes": 1e400, "app": "X"}'
        % (DEVICE.encode(), ANTENNA.encode()),
    ),
    ("bad_uuid:id", with_(id="not-a-uuid")),
    ("bad_uuid:id", with_(id=DEVICE.replace("-", ""))),
    ("bad_uuid:antenna_id", with_(antenna_id=ANTENNA[:-1] + "g")),
    ("timestamp_out_of_range", with_(timestamp=-1)),
    ("timestamp_out_of_range", with_(timestamp=946_684_799)),
    ("timestamp_out_of_range", with_(timestamp=4_102_444_800)),
    ("timestamp_out_of_range", with_(timestamp=2**70)),
    ("empty_app", with_(app="")),
    ("empty_app", with_(app="   ")),
]


@pytest.mark.parametrize(("reason", "message"), BREAKERS)
def test_each_contract_breaker_is_rejected_with_its_own_reason(
    reason: str, message: bytes | None
) -> None:
    assert parse(message) == Reject(reason)


def test_every_reason_code_is_exercised_and_distinct() -> None:
    assert {reason for reason, _ in BREAKERS} == set(REASONS)
    assert len(REASONS) == len(set(REASONS))


def test_valid_event_parses_to_typed_values() -> None:
    assert parse(encode(VALID)) == Event(1_764_000_000, DEVICE, ANTENNA, 1234, "SKYPE")


def test_misspelt_timestmap_key_is_accepted() -> None:
    message = encode({k if k != "timestamp" else "timestmap": v for k, v in VALID.items()})
    assert parse(message) == Event(1_764_000_000, DEVICE, ANTENNA, 1234, "SKYPE")


def test_correct_key_wins_when_both_spellings_are_present() -> None:
    assert parse(with_(timestmap=5)) == Event(1_764_000_000, DEVICE, ANTENNA, 1234, "SKYPE")


def test_unknown_fields_are_ignored_and_uuids_lower_cased() -> None:
    message = with_(id=DEVICE.upper(), antenna_id=ANTENNA.upper(), extra={"nested": 1})
    assert parse(message) == Event(1_764_000_000, DEVICE, ANTENNA, 1234, "SKYPE")


def test_edges_of_the_accepted_ranges_are_valid() -> None:
    assert parse(with_(bytes=0)) == Event(1_764_000_000, DEVICE, ANTENNA, 0, "SKYPE")
    assert parse(with_(bytes=2**63 - 1)) == Event(
        1_764_000_000, DEVICE, ANTENNA, 2**63 - 1, "SKYPE"
    )
    assert parse(with_(timestamp=946_684_800)) == Event(946_684_800, DEVICE, ANTENNA, 1234, "SKYPE")
