"""Differential fuzz: hostile traffic through both ingestors, held to one answer.

A few thousand generated hostile messages (antenna_elt.sim.hostile: every kind of breaker
and its unusual spellings, valid events at every edge, re-sends, null and empty values,
binary garbage, mutations; seeded) go to one topic; `ingest postgres` and `ingest lake`,
each in its own group, read it until caught up. Neither may crash; on each, staged events
plus rejects are exactly the produced offsets; the two sinks agree row for row (values)
and reason for reason (with the raw bytes); and the reasons are the contract's own.

ANTENNA_ELT_FUZZ_MESSAGES (default 3000) and ANTENNA_ELT_FUZZ_SEED (default 13) size and
seed it; `make bench` runs it with 100,000 messages (bench/fuzz.py).
"""

from __future__ import annotations

import os
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from both_sinks import (
    ingest_both,
    lake_events,
    lake_rejects,
    postgres_events,
    postgres_rejects,
    producer,
)
from helpers import all_offsets, end_offsets

from antenna_elt.contract import parse
from antenna_elt.settings import DEFAULT_FUTURE_SKEW, Settings
from antenna_elt.sim.hostile import hostile_messages

MESSAGES = int(os.environ.get("ANTENNA_ELT_FUZZ_MESSAGES", "3000"))
SEED = int(os.environ.get("ANTENNA_ELT_FUZZ_SEED", "13"))


def send(settings: Settings, topic: str, messages: list[Any]) -> None:
    p = producer(settings, **{"linger.ms": 20, "compression.type": "lz4"})
    failed: list[str] = []

    def delivered(error: Any, _msg: Any) -> None:
        if error is not None:
            failed.append(str(error))

    for partition, key, value, headers in messages:
        while True:
            try:
                p.produce(
                    topic, value=value, key=key, partition=partition, headers=headers,
                    on_delivery=delivered,
                )  # fmt: skip
                break
            except BufferError:
                p.poll(0.05)
        p.poll(0)
    assert p.flush(120) == 0 and not failed, failed[:3]


DEVICE = "00000000-0000-0000-0000-000000000004"
ANTENNA = "6f1c3b2a-9d4e-4f5a-8b7c-0123456789ab"
T0 = 1_795_489_200  # 2026-11-24T03:00:00Z


def raw_event(i: int, bytes_text: str = "7", app: str = '"SKYPE"', extra: str = "") -> bytes:
    return (
        f'{{"timestamp": {T0 + i}, "id": "{DEVICE}", "antenna_id": "{ANTENNA}", '
        f'"bytes": {bytes_text}, "app": {app}{extra}}}'
    ).encode()


# The messages of issue 13 that stopped both ingestors for good (or made the layers differ)
POISON = [
    ("nul_character:app", raw_event(1, app='"a\\u0000b"')),
    ("lone_surrogate:app", raw_event(2, app='"a\\ud800b"')),
    ("too_deeply_nested", b"[" * 10_000 + b"]" * 10_000),
    ("too_deeply_nested", raw_event(3, extra=', "x": ' + "[" * 10_000 + "]" * 10_000)),
    ("bytes_out_of_range", raw_event(4, bytes_text="1" * 5000)),
]


@pytest.mark.usefixtures("kafka_client")  # once per Kafka client
def test_poison_messages_land_in_both_sinks_rejects_and_the_events_behind_them_too(
    settings: Settings, kafka_topic: str, pg_schema: str, pg_conn: Any, tmp_path: Path
) -> None:
    messages: list[Any] = []
    for n, (_, value) in enumerate(POISON):
        messages += [(0, None, value, []), (0, None, raw_event(100 + n), [])]
    send(settings, kafka_topic, messages)
    lake = tmp_path / "lake"

    ingest_both(kafka_topic, pg_schema, lake, tmp_path, timeout=120)

    expected_rejects = [(0, 2 * n, reason, value) for n, (reason, value) in enumerate(POISON)]
    assert postgres_rejects(pg_conn, pg_schema, kafka_topic) == expected_rejects
    assert lake_rejects(lake) == expected_rejects
    expected_events = [
        (0, 2 * n + 1, T0 + 100 + n, DEVICE, ANTENNA, 7, "SKYPE") for n in range(len(POISON))
    ]
    assert postgres_events(pg_conn, pg_schema, kafka_topic) == expected_events
    assert lake_events(lake) == expected_events


@pytest.mark.usefixtures("kafka_client")  # once per Kafka client
def test_hostile_traffic_lands_identically_in_both_sinks_and_nothing_crashes(
    settings: Settings, kafka_topic: str, pg_schema: str, pg_conn: Any, tmp_path: Path
) -> None:
    hour = int(time.time()) // 3600 * 3600
    messages = hostile_messages(SEED, MESSAGES, hour)
    sent_at = int(time.time())
    send(settings, kafka_topic, messages)
    lake = tmp_path / "lake"

    ingest_both(kafka_topic, pg_schema, lake, tmp_path, timeout=max(300, MESSAGES / 100))

    offsets = all_offsets(end_offsets(settings, kafka_topic))
    assert len(offsets) == MESSAGES
    events = postgres_events(pg_conn, pg_schema, kafka_topic)
    rejects = postgres_rejects(pg_conn, pg_schema, kafka_topic)
    # each sink: staged + rejects = produced, every offset once
    assert sorted([e[:2] for e in events] + [r[:2] for r in rejects]) == offsets
    lake_rows, lake_bad = lake_events(lake), lake_rejects(lake)
    assert sorted([e[:2] for e in lake_rows] + [r[:2] for r in lake_bad]) == offsets
    # the two sinks agree: the same values, the same reasons and raw bytes
    assert events == lake_rows
    assert rejects == lake_bad
    # and the reasons are the contract's (every event time is far from the future bound)
    expected = Counter(
        r if isinstance(r, str) else "valid"
        for r in (parse(v, sent_at + DEFAULT_FUTURE_SKEW) for _, _, v, _ in messages)
    )
    landed = Counter(r[2] for r in rejects) + Counter(valid=len(events))
    assert landed == expected
