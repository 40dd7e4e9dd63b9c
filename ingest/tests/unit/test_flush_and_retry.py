"""The flush policy (count, bytes, age on an injected clock) and the one backoff helper."""

from __future__ import annotations

import pytest
from fakes import FakeClock

from antenna_elt.ingest.batch import Batch
from antenna_elt.ingest.flush import FlushPolicy
from antenna_elt.ingest.retry import backoff, retry


def batch(messages: int, value_bytes: int = 0, started: float = 1_000.0) -> Batch:
    b = Batch("devices", [(0, i, b"", -1) for i in range(messages)], {0: 0}, {0: messages})
    b.started, b.value_bytes = started, value_bytes
    return b


def test_an_empty_batch_is_never_due_and_polls_wait_half_a_second() -> None:
    policy = FlushPolicy(max_messages=1, max_age=0.0, clock=FakeClock())
    assert not policy.due(Batch("devices"))
    assert policy.poll_timeout_ms(Batch("devices")) == 500


def test_due_by_count_by_bytes_and_by_age() -> None:
    clock = FakeClock(start=1_000.0)
    policy = FlushPolicy(max_messages=10, max_age=2.0, max_bytes=100, clock=clock)
    assert not policy.due(batch(9, 99))
    assert policy.due(batch(10, 0))
    assert policy.due(batch(1, 100))
    clock.advance(1.999)
    assert not policy.due(batch(1))
    clock.advance(0.001)
    assert policy.due(batch(1))


def test_a_poll_never_waits_past_the_batch_deadline() -> None:
    clock = FakeClock(start=1_000.0)
    policy = FlushPolicy(max_messages=10, max_age=2.0, clock=clock)
    clock.advance(1.75)
    assert policy.poll_timeout_ms(batch(1)) == 250
    clock.advance(1.0)
    assert policy.poll_timeout_ms(batch(1)) == 0


def test_room_is_what_the_batch_still_takes_and_at_least_one() -> None:
    policy = FlushPolicy(max_messages=10, max_age=1.0)
    assert [policy.room(batch(n)) for n in (0, 4, 10, 12)] == [10, 6, 1, 1]


def test_backoff_doubles_up_to_thirty_seconds() -> None:
    assert [backoff(n) for n in range(8)] == [1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0, 30.0]


def test_retry_waits_the_backoff_after_each_failure_then_returns() -> None:
    clock = FakeClock()
    outcomes = [OSError("down"), OSError("down"), "done"]
    said: list[tuple[str, float]] = []

    def attempt() -> str:
        outcome = outcomes.pop(0)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    result = retry(
        attempt,
        retry_on=OSError,
        on_failure=lambda exc, seconds: said.append((str(exc), seconds)),
        wait=clock.wait,
    )
    assert result == "done"
    assert said == [("down", 1.0), ("down", 2.0)]
    assert clock.waits == [1.0, 2.0]


def test_retry_gives_up_when_on_failure_raises_and_starts_from_a_given_failure() -> None:
    calls: list[int] = []

    def give_up(exc: BaseException, seconds: float) -> None:
        raise RuntimeError(f"gave up after {exc}")

    with pytest.raises(RuntimeError, match="gave up after first"):
        retry(
            lambda: calls.append(1),
            retry_on=OSError,
            on_failure=give_up,
            wait=lambda s: None,
            failed=OSError("first"),
        )
    assert calls == []


def test_other_errors_are_not_retried() -> None:
    def attempt() -> None:
        raise ValueError("bad")

    with pytest.raises(ValueError):
        retry(attempt, retry_on=OSError, on_failure=lambda e, s: None, wait=lambda s: None)
