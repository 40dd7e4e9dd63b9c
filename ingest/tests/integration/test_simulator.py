"""The simulator: deterministic messages, a ledger that is the exact truth of them."""

from __future__ import annotations

import json
import time
from collections import Counter, defaultdict
from pathlib import Path

import pytest
from conftest import run_cli

from antenna_elt.contract import BYTES_MAX, REASONS, parse
from antenna_elt.sim.generator import MALFORMED_KINDS, Generator, SimConfig
from antenna_elt.sim.producer import default_start
from antenna_elt.sim.users import load_users

HOUR = 1_795_489_200  # 2026-11-24T03:00:00Z
# an ingestor reading now, with the default skew: what it accepts as not in the future
NOW_BOUND = int(time.time()) + 300


def config(**overrides: object) -> SimConfig:
    base: dict[str, object] = dict(
        start=HOUR, duration=3600, count=36_000, seed=7, users=load_users()
    )
    base.update(overrides)
    return SimConfig(**base)  # type: ignore[arg-type]


def test_same_seed_gives_identical_messages_and_ledger() -> None:
    first, second = (
        Generator(config(malformed_share=0.02, duplicate_share=0.02, late_share=0.05)),
        None,
    )
    messages = [(m.key, m.value) for m in first]
    second = Generator(config(malformed_share=0.02, duplicate_share=0.02, late_share=0.05))
    assert [(m.key, m.value) for m in second] == messages
    assert second.ledger.to_json() == first.ledger.to_json()
    other = Generator(config(seed=8))
    assert [m.value for m in other][:100] != [v for _, v in messages][:100]


def test_ledger_equals_totals_recomputed_from_the_messages() -> None:
    generator = Generator(config(malformed_share=0.02, duplicate_share=0.03, late_share=0.05))
    values = [m.value for m in generator]
    ledger = generator.ledger

    # independent recount: parse every message, drop exact re-sends, aggregate
    distinct = set()
    reasons: Counter[str] = Counter()
    for value in values:
        result = parse(value, NOW_BOUND)
        if isinstance(result, tuple):
            distinct.add(result)
        else:
            reasons[result] += 1
    per_hour_antenna: dict[tuple[int, str], int] = defaultdict(int)
    per_window_user: dict[tuple[int, str], int] = defaultdict(int)
    for ts, device, antenna, nbytes, _app in distinct:
        per_hour_antenna[(ts - ts % 3600, antenna)] += nbytes
        per_window_user[(ts - ts % 300, device)] += nbytes

    assert ledger.counters["messages_sent"] == len(values) == 36_000
    assert ledger.counters["events"] == len(distinct)
    assert ledger.counters["duplicates"] == len(values) - len(distinct) - sum(reasons.values())
    assert dict(ledger.malformed_by_kind) == dict(reasons)
    assert ledger.total_bytes == sum(e[3] for e in distinct)
    assert {
        (int(k.timestamp()), a): v for (k, a), v in ledger.bytes_by("hour", "antenna").items()
    } == per_hour_antenna
    assert {
        (int(k.timestamp()), u): v for (k, u), v in ledger.bytes_by("window", "user").items()
    } == per_window_user


def test_every_malformed_kind_is_rejected_with_that_reason() -> None:
    import random

    for kind, make in MALFORMED_KINDS.items():
        assert parse(make(random.Random(1)), NOW_BOUND) == kind
    assert set(MALFORMED_KINDS) == set(REASONS) - {"empty_message"}  # Kafka sends no empty value


def test_valid_events_stay_within_the_contracts_bounds() -> None:
    generator = Generator(config(count=20_000, malformed_share=0.05, late_share=0.1))
    events = [e for e in (parse(m.value, HOUR + 3600) for m in generator) if type(e) is tuple]
    assert (
        len(events) == generator.ledger.counters["events"] + generator.ledger.counters["duplicates"]
    )
    assert max(e[3] for e in events) <= BYTES_MAX
    assert max(e[0] for e in events) < HOUR + 3600  # never past the simulated clock


@pytest.mark.parametrize(
    ("duration", "speedup"), [(3600, 360.0), (3600, 0.0), (3600, 1.0), (10_800, 60.0), (600, 2.0)]
)
def test_the_default_start_never_lets_the_simulated_clock_run_ahead_of_the_real_one(
    duration: int, speedup: float
) -> None:
    now = HOUR + 1234
    start = default_start(now, duration, speedup)
    assert start % 3600 == 0
    # the pacer sends the event of simulated time `start + x` at real time
    # `now + x / speedup` at the earliest (unpaced: at once)
    for x in range(0, duration + 1, 60):
        sent_at = now + (x / speedup if speedup else 0)
        assert start + x <= sent_at
    if 0 < speedup <= 1:
        assert start == HOUR  # the current hour, as before


def test_late_events_count_in_the_window_of_their_own_timestamp() -> None:
    generator = Generator(config(count=6000, late_share=0.3, late_max=1800))
    values = [m.value for m in generator]
    assert generator.ledger.counters["late"] > 1000
    earlier = [parse(v, NOW_BOUND) for v in values]
    before_start = [e for e in earlier if isinstance(e, tuple) and e[0] < HOUR]
    assert before_start, "late events can reach into the previous hour"
    previous_hour = generator.ledger.bytes_by("hour", "app")
    assert sum(
        v for (hour, _), v in previous_hour.items() if hour.timestamp() == HOUR - 3600
    ) == sum(e[3] for e in before_start)


def test_default_hour_puts_some_but_not_all_users_over_quota() -> None:
    generator = Generator(config())
    for _ in generator:
        pass
    breaching = {b["email"] for b in generator.ledger.quota_breaches}
    assert "fede@gmail.com" in breaching  # 5000 bytes an hour
    assert 3 <= len(breaching) <= 15
    assert len(generator.ledger.unknown_devices) == 2


def test_cli_dry_run_writes_messages_and_ledger(tmp_path: Path) -> None:
    out, ledger = tmp_path / "messages.jsonl", tmp_path / "ledger.json"
    proc = run_cli(
        "simulate", "--count", "500", "--start", "2026-11-24T03:00:00Z", "--seed", "7",
        "--output", str(out), "--ledger", str(ledger), "--quiet",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert len(out.read_bytes().splitlines()) == 500
    assert json.loads(ledger.read_text())["counters"]["messages_sent"] == 500


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--count", "0"], "argument --count: 0 must be greater than 0"),
        (
            ["--duration", "soon"],
            "argument --duration: 'soon' is not a duration like 3600s, 90m or 1h",
        ),
        (["--start", "yesterday"], "argument --start: 'yesterday' is not an ISO 8601 time"),
        (["--late-share", "1.5"], "argument --late-share: 1.5 is not between 0 and 1"),
    ],
)
def test_bad_arguments_are_one_line_errors(args: list[str], message: str) -> None:
    proc = run_cli("simulate", *args)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], proc.stderr


def test_unreachable_kafka_is_one_line_naming_the_fix() -> None:
    import os

    proc = run_cli(
        "simulate", "--count", "5", env={**os.environ, "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1"}
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "antenna-elt: error: cannot reach Kafka at 127.0.0.1:1: start it with `make up` or set KAFKA_BOOTSTRAP_SERVERS"
    ]
