"""`antenna-elt ingest postgres` against the real broker and server the test set-up starts."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter

import pytest
from helpers import (
    all_offsets,
    end_offsets,
    ingest_until_caught_up,
    produce,
    staged_offsets,
    unique_group,
)
from test_contract import ANTENNA, BREAKERS, DEVICE

from antenna_elt.settings import Settings


def valid_event(i: int) -> bytes:
    return json.dumps(
        {
            "timestamp": 1_764_000_000 + i,
            "id": DEVICE,
            "antenna_id": ANTENNA,
            "bytes": 100 + i,
            "app": "SKYPE",
        }
    ).encode()


@pytest.mark.usefixtures("kafka_client")  # once per Kafka client
def test_every_contract_breaker_lands_in_rejects_with_its_reason(
    settings: Settings, kafka_topic: str, pg_schema: str, pg_conn
) -> None:
    # all breakers on partition 0, interleaved with valid events, in a known order
    messages: list[tuple[int, bytes | None]] = []
    expected_rejects: dict[int, tuple[str, bytes | None]] = {}
    for i, (reason, value) in enumerate(BREAKERS):
        messages.append((0, valid_event(i)))
        expected_rejects[len(messages)] = (reason, value)
        messages.append((0, value))
    produce(settings, kafka_topic, messages)

    stats = ingest_until_caught_up(settings, kafka_topic, pg_schema, unique_group())

    rejects = pg_conn.execute(
        f"select kafka_offset, reason, raw_value from {pg_schema}.device_usage_rejects order by 1"
    ).fetchall()
    # Kafka stores a null value and an empty value differently; both are "empty_message"
    assert [(o, r, (bytes(v) if v is not None else None) or None) for o, r, v in rejects] == [
        (offset, reason, value or None)
        for offset, (reason, value) in sorted(expected_rejects.items())
    ]
    assert Counter(r for _, r, _ in rejects) == Counter(reason for reason, _ in BREAKERS)
    assert (stats.events, stats.rejects) == (len(BREAKERS), len(BREAKERS))


@pytest.mark.usefixtures("kafka_client")  # once per Kafka client
def test_valid_events_land_typed_with_their_kafka_coordinates(
    settings: Settings, kafka_topic: str, pg_schema: str, pg_conn
) -> None:
    misspelt = (
        b'{"timestmap": 1764003600, "id": "%s", "antenna_id": "%s", "bytes": 7, "app": "WHATSAPP", "x": 1}'
        % (
            DEVICE.upper().encode(),
            ANTENNA.encode(),
        )
    )
    produce(settings, kafka_topic, [(1, valid_event(0)), (2, misspelt)])

    ingest_until_caught_up(settings, kafka_topic, pg_schema, unique_group())

    rows = pg_conn.execute(
        f"select extract(epoch from event_time)::bigint, id::text, antenna_id::text, bytes, app, "
        f"kafka_topic, kafka_partition, kafka_offset from {pg_schema}.device_usage order by kafka_partition"
    ).fetchall()
    assert rows == [
        (1_764_000_000, DEVICE, ANTENNA, 100, "SKYPE", kafka_topic, 1, 0),
        (1_764_003_600, DEVICE, ANTENNA, 7, "WHATSAPP", kafka_topic, 2, 0),
    ]


@pytest.mark.usefixtures("kafka_client")  # once per Kafka client
def test_staged_rows_plus_rejects_equal_consumed_offsets_exactly(
    settings: Settings, kafka_topic: str, pg_schema: str, pg_conn
) -> None:
    messages = [(i % 3, valid_event(i) if i % 7 else b"not json") for i in range(3000)]
    produce(settings, kafka_topic, messages)

    ingest_until_caught_up(settings, kafka_topic, pg_schema, unique_group(), batch_size=250)

    ends = end_offsets(settings, kafka_topic)
    assert sum(ends.values()) == 3000
    assert sorted(staged_offsets(pg_conn, pg_schema, kafka_topic)) == all_offsets(ends)
    assert pg_conn.execute(f"select count(*) from {pg_schema}.device_usage_rejects").fetchone() == (
        429,
    )


@pytest.mark.usefixtures("kafka_client")  # once per Kafka client
def test_a_second_run_resumes_from_stored_offsets_and_adds_only_new_messages(
    settings: Settings, kafka_topic: str, pg_schema: str, pg_conn
) -> None:
    group = unique_group()
    produce(settings, kafka_topic, [(i % 3, valid_event(i)) for i in range(300)])
    first = ingest_until_caught_up(settings, kafka_topic, pg_schema, group)
    again = ingest_until_caught_up(settings, kafka_topic, pg_schema, group)
    produce(settings, kafka_topic, [(i % 3, valid_event(i)) for i in range(300, 450)])
    third = ingest_until_caught_up(settings, kafka_topic, pg_schema, group)

    assert (first.events, again.events, third.events) == (300, 0, 150)
    total = pg_conn.execute(f"select count(*), sum(bytes) from {pg_schema}.device_usage").fetchone()
    assert total == (450, sum(100 + i for i in range(450)))
    stored = pg_conn.execute(
        f"select partition, next_offset from {pg_schema}.ingest_offsets where consumer_group = %s order by 1",
        (group,),
    ).fetchall()
    assert stored == [(0, 150), (1, 150), (2, 150)]


def test_unreachable_postgres_is_one_line_naming_the_fix(
    kafka_topic: str, settings: Settings
) -> None:
    env = {"PATH": "/usr/bin:/bin", "PGHOST": "127.0.0.1", "PGPORT": "1", "HOME": "/tmp"}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "antenna_elt.cli",
            "ingest",
            "postgres",
            "--topic",
            kafka_topic,
            "--until-caught-up",
        ],
        capture_output=True,
        text=True,
        env={**env, "KAFKA_BOOTSTRAP_SERVERS": settings.kafka_bootstrap_servers},
        timeout=60,
    )
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("antenna-elt: error: cannot reach PostgreSQL")
    assert "make up" in lines[0]


def test_bad_schema_name_is_refused_before_connecting() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "antenna_elt.cli", "ingest", "postgres", "--schema", "raw; drop"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "antenna-elt ingest postgres: error: argument --schema: 'raw; drop' is not a plain SQL "
        "name: use lower-case letters, digits and _, not starting with a digit, at most 63 "
        "characters (e.g. raw) (see antenna-elt ingest postgres --help)"
    ]
