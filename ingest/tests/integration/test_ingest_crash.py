"""Crash safety of `antenna-elt ingest postgres`: kill -9, broker restart, database restart.

Each scenario checks the one property the operator relies on: afterwards, every offset
of the topic is in staging or rejects exactly once, and the staged bytes equal what was
produced.
"""

from __future__ import annotations

import json
import random
import signal
import threading
import time
from pathlib import Path

import psycopg
import pytest
from helpers import (
    all_offsets,
    end_offsets,
    ingest_until_caught_up,
    ingestor_process,
    kill9,
    produce,
    staged_offsets,
    unique_group,
    wait_for,
)
from test_contract import ANTENNA, DEVICE

from antenna_elt.settings import Settings

pytestmark = pytest.mark.slow


def event(i: int) -> bytes:
    return json.dumps(
        {
            "timestamp": 1_764_000_000 + i,
            "id": DEVICE,
            "antenna_id": ANTENNA,
            "bytes": i,
            "app": "FACETIME",
        }
    ).encode()


def staged_count(settings: Settings, schema: str) -> int:
    try:
        with psycopg.connect(settings.pg_conninfo, connect_timeout=3) as conn:
            row = conn.execute(
                f"select (select count(*) from {schema}.device_usage) + (select count(*) from {schema}.device_usage_rejects)"
            ).fetchone()
            return int(row[0]) if row else 0
    except psycopg.Error:
        return -1


def assert_exactly_once(settings: Settings, topic: str, schema: str, produced: int) -> None:
    ends = end_offsets(settings, topic)
    assert sum(ends.values()) == produced
    with psycopg.connect(settings.pg_conninfo) as conn:
        assert sorted(staged_offsets(conn, schema, topic)) == all_offsets(ends)
        rejects = conn.execute(f"select count(*) from {schema}.device_usage_rejects").fetchone()
        total = conn.execute(f"select count(*), sum(bytes) from {schema}.device_usage").fetchone()
    expected_rejects = sum(1 for i in range(produced) if i % 50 == 49)
    assert rejects == (expected_rejects,)
    assert total == (produced - expected_rejects, sum(i for i in range(produced) if i % 50 != 49))


def messages(start: int, stop: int) -> list[tuple[int, bytes | None]]:
    return [(i % 3, event(i) if i % 50 != 49 else b"{broken") for i in range(start, stop)]


@pytest.mark.usefixtures("kafka_client")  # once per Kafka client
def test_kill_9_mid_stream_loses_and_duplicates_nothing(
    settings: Settings, kafka_topic: str, pg_schema: str, tmp_path: Path
) -> None:
    total = 40_000
    producer = threading.Thread(
        target=lambda: [
            produce(settings, kafka_topic, messages(s, s + 2000)) or time.sleep(0.2)
            for s in range(0, total, 2000)
        ]
    )
    producer.start()
    group = unique_group()
    rng = random.Random(7)
    log = tmp_path / "ingest.log"
    kills = 0
    # small batches and latency: a kill lands mid-batch, mid-COPY or mid-commit
    args = ("--batch-size", "700", "--max-latency", "0.1")
    proc = ingestor_process(settings, kafka_topic, pg_schema, group, *args, log_path=log)
    wait_for(lambda: staged_count(settings, pg_schema) > 0, 60, "the first rows")
    while kills < 5:
        time.sleep(rng.uniform(0.3, 1.5))
        kill9(proc)
        kills += 1
        proc = ingestor_process(settings, kafka_topic, pg_schema, group, *args, log_path=log)
    producer.join()
    wait_for(lambda: staged_count(settings, pg_schema) >= total, 180, "all messages staged")
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) == 0
    assert "stop requested" in log.read_text()
    assert_exactly_once(settings, kafka_topic, pg_schema, total)
    # and a last bounded run finds nothing left to do
    assert ingest_until_caught_up(settings, kafka_topic, pg_schema, group).messages == 0
