"""The hostile traffic generator, against the contract alone: every message gets an answer
(never an exception), every reason occurs, and what is valid is storable by both sinks."""

from __future__ import annotations

from collections import Counter

from antenna_elt.contract import BYTES_MAX, REASONS, future_bound, parse
from antenna_elt.sim.hostile import hostile_messages

NOW = 1_795_489_200  # 2026-11-24T03:00:00Z, the hour the generator is told it is


def test_the_same_seed_gives_the_same_messages() -> None:
    assert hostile_messages(5, 500, NOW) == hostile_messages(5, 500, NOW)
    assert hostile_messages(5, 500, NOW) != hostile_messages(6, 500, NOW)


def test_every_hostile_message_gets_an_answer_and_every_reason_occurs() -> None:
    bound = future_bound((NOW + 60) * 1000, NOW + 120, 300)  # read a minute after sending
    results = [parse(value, bound) for _, _, value, _ in hostile_messages(11, 5000, NOW)]
    reasons = Counter(r for r in results if isinstance(r, str))
    events = [r for r in results if isinstance(r, tuple)]
    assert set(reasons) == set(REASONS)
    assert 0.3 < len(events) / len(results) < 0.7
    for ts, device, antenna, nbytes, app in events:
        assert 0 <= nbytes <= BYTES_MAX and ts <= bound
        assert "\x00" not in app and app.strip()
        app.encode("utf-8")  # no lone surrogate: PostgreSQL and Arrow store it
        assert len(device) == len(antenna) == 36 and device == device.lower()
