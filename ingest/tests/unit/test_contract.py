"""The event contract: every kind of breaker has its own reason; valid events parse exactly."""

from __future__ import annotations

import json

import pytest

from antenna_elt.contract import (
    BYTES_MAX,
    MAX_DEPTH,
    REASONS,
    Event,
    Reject,
    future_bound,
    parse,
)
from antenna_elt.ingest.batch import Batch

DEVICE = "00000000-0000-0000-0000-000000000004"
ANTENNA = "6f1c3b2a-9d4e-4f5a-8b7c-0123456789ab"
VALID = {
    "timestamp": 1_764_000_000,
    "id": DEVICE,
    "antenna_id": ANTENNA,
    "bytes": 1234,
    "app": "SKYPE",
}


# the latest event time accepted in these tests: five minutes after VALID's
BOUND = VALID["timestamp"] + 300  # type: ignore[operator]


def encode(obj: object) -> bytes:
    # the standard library writes integers of any size; orjson stops at 64 bits
    return json.dumps(obj).encode()


def without(field: str) -> bytes:
    return encode({k: v for k, v in VALID.items() if k != field})


def with_(**changes: object) -> bytes:
    return encode({**VALID, **changes})


def with_raw(**raw: str) -> bytes:
    """VALID with fields set to raw JSON text (numbers of any length, any nesting)."""
    message = with_(**{field: f"@{field}@" for field in raw})
    for field, text in raw.items():
        message = message.replace(f'"@{field}@"'.encode(), text.encode())
    return message


def nested(depth: int) -> str:
    """JSON arrays ``depth`` deep."""
    return "[" * depth + "]" * depth


# One message per breach, each with the one reason it must get.
BREAKERS: list[tuple[str, bytes | None]] = [
    ("empty_message", b""),
    ("empty_message", None),
    ("not_json", b"{not json"),
    ("not_json", b"\xff\xfe garbage"),
    # not JSON though Python's json module reads them: NaN and Infinity, a byte order mark,
    # UTF-16, surrogates encoded in UTF-8 (the standard's text is UTF-8 without a BOM)
    ("not_json", b"NaN"),
    ("not_json", with_raw(bytes="NaN")),
    ("not_json", with_raw(bytes="Infinity")),
    ("not_json", b"\xef\xbb\xbf" + encode(VALID)),
    ("not_json", json.dumps(VALID).encode("utf-16")),
    ("not_json", with_(app="SKYPE").replace(b"SKYPE", b"a\xed\xa0\x80b")),
    ("too_deeply_nested", b"[" * 10_000 + b"]" * 10_000),
    ("too_deeply_nested", b'{"a":' * 5000 + b"1" + b"}" * 5000),
    ("too_deeply_nested", with_raw(extra=nested(MAX_DEPTH))),
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
    ("negative_bytes", with_raw(bytes="-" + "9" * 5000)),
    ("bytes_out_of_range", with_(bytes=BYTES_MAX + 1)),
    ("bytes_out_of_range", with_(bytes=2**63)),
    ("bytes_out_of_range", with_raw(bytes="1" * 5000)),
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
    ("timestamp_out_of_range", with_raw(timestamp="7" * 5000)),
    ("timestamp_in_future", with_(timestamp=4_000_000_000)),
    ("empty_app", with_(app="")),
    ("empty_app", with_(app="   ")),
    ("nul_character:app", with_(app="a\x00b")),
    ("nul_character:app", with_(app="\x00")),
    ("lone_surrogate:app", with_(app="a\ud800b")),
    ("lone_surrogate:app", with_(app="\udfff")),
]


@pytest.mark.parametrize(("reason", "message"), BREAKERS)
def test_each_contract_breaker_is_rejected_with_its_own_reason(
    reason: str, message: bytes | None
) -> None:
    assert parse(message, BOUND) == Reject(reason)


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
    assert parse(with_(bytes=0), BOUND) == Event(1_764_000_000, DEVICE, ANTENNA, 0, "SKYPE")
    assert parse(with_(bytes=2**32 - 1), BOUND) == Event(
        1_764_000_000, DEVICE, ANTENNA, 4_294_967_295, "SKYPE"
    )
    assert parse(with_(timestamp=946_684_800), BOUND) == Event(
        946_684_800, DEVICE, ANTENNA, 1234, "SKYPE"
    )
    assert parse(with_(timestamp=BOUND), BOUND) == Event(BOUND, DEVICE, ANTENNA, 1234, "SKYPE")
    assert parse(with_(timestamp=BOUND + 1), BOUND) == "timestamp_in_future"


def test_bytes_bound_keeps_every_sum_of_a_mart_within_bigint() -> None:
    # 2**31 events of the largest size in one group still fit a bigint sum
    assert 2**31 * BYTES_MAX <= 2**63 - 1 < (2**31 + 1) * BYTES_MAX + BYTES_MAX


def test_text_that_neither_sink_could_store_is_valid_outside_the_contract_fields() -> None:
    # unknown fields are ignored: a NUL, a lone surrogate or deep nesting in them is fine
    expected = Event(1_764_000_000, DEVICE, ANTENNA, 1234, "SKYPE")
    assert parse(with_(note="a\x00b"), BOUND) == expected
    assert parse(with_(note="a\ud800b"), BOUND) == expected
    assert parse(with_raw(extra=nested(MAX_DEPTH - 1)), BOUND) == expected
    # the same depths read by the slower path (orjson refuses the lone surrogate)
    slow = with_raw(note='"\\ud800"', extra=nested(MAX_DEPTH - 1))
    assert parse(slow, BOUND) == expected
    slow = with_raw(note='"\\ud800"', extra=nested(MAX_DEPTH))
    assert parse(slow, BOUND) == "too_deeply_nested"
    # a lone surrogate or a NUL in a UUID field is simply not a UUID
    assert parse(with_(id=DEVICE[:-1] + "\ud800"), BOUND) == "bad_uuid:id"
    assert parse(with_(antenna_id=ANTENNA[:-1] + "\x00"), BOUND) == "bad_uuid:antenna_id"


def test_unicode_apps_are_valid_and_kept_exactly() -> None:
    for app in ("WhatsApp 📱", "微信", "a\tb\\c\nd\r", "\uffff", "\U0010ffff", "é" * 10_000):
        expected = Event(1_764_000_000, DEVICE, ANTENNA, 1234, app)
        assert parse(with_(app=app), BOUND) == expected  # escaped: \ud83d\udcf1
        unescaped = json.dumps({**VALID, "app": app}, ensure_ascii=False).encode()
        assert parse(unescaped, BOUND) == expected


def test_the_future_bound_is_the_record_time_capped_by_our_clock_plus_the_skew() -> None:
    now = 1_795_489_200.7
    # the record's time when it is behind our clock: every reader decides alike
    assert future_bound(1_795_489_000_999, now, 300) == 1_795_489_300
    # a producer clock ahead of ours cannot move the bound past our clock
    assert future_bound(1_795_499_000_000, now, 300) == 1_795_489_500
    # no record timestamp (old message formats): our clock
    assert future_bound(-1, now, 300) == 1_795_489_500
    assert future_bound(None, now, 300) == 1_795_489_500


def test_a_batch_validates_each_message_against_its_own_record_time() -> None:
    record_ms = (VALID["timestamp"] - 600) * 1000  # type: ignore[operator]
    batch = Batch("devices", clock_time=VALID["timestamp"] + 3600, future_skew=600)  # type: ignore[operator]
    batch.messages = [
        (0, 0, encode(VALID), record_ms),  # exactly at the bound
        (0, 1, with_(timestamp=VALID["timestamp"] + 1), record_ms),  # type: ignore[operator]
        (0, 2, with_(timestamp=VALID["timestamp"] + 1), record_ms + 1000),  # type: ignore[operator]
        (0, 3, with_(timestamp=VALID["timestamp"] + 3600 + 600), -1),  # type: ignore[operator]
    ]
    rows, rejects = batch.split()
    assert [r[-1] for r in rows] == [0, 2, 3]
    assert [(o, reason) for _, o, _, reason in rejects] == [(1, "timestamp_in_future")]


def test_remembered_uuids_answer_as_the_first_check_did(monkeypatch: pytest.MonkeyPatch) -> None:
    """Validated UUIDs are remembered (contract._CANONICAL): with the memory warm, full
    or starting again, every hostile message gets the answer it gets with none."""
    from antenna_elt import contract
    from antenna_elt.sim.hostile import hostile_messages

    now = 1_795_489_200
    values = [value for _, _, value, _ in hostile_messages(17, 3000, now)]
    values += [with_(antenna_id=ANTENNA.upper()), with_(), with_(antenna_id=ANTENNA[:-1] + "g")]
    contract._CANONICAL.clear()
    cold = []
    for value in values:
        cold.append(parse(value, now + 300))
        contract._CANONICAL.clear()
    warm = [parse(value, now + 300) for value in values]
    assert warm == cold
    assert len(contract._CANONICAL) > 100  # the hostile set repeats few ids: it was used
    assert cold[-3:] == [
        Event(1_764_000_000, DEVICE, ANTENNA, 1234, "SKYPE"),
        Event(1_764_000_000, DEVICE, ANTENNA, 1234, "SKYPE"),
        "bad_uuid:antenna_id",
    ]
    monkeypatch.setattr(contract, "CANONICAL_LIMIT", 50)
    contract._CANONICAL.clear()
    assert [parse(value, now + 300) for value in values] == cold
    assert len(contract._CANONICAL) <= 50
