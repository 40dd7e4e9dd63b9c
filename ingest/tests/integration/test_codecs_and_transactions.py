"""What real producers do, through both ingestors: compress (every codec Kafka supports)
and write in transactions (read committed only; a bounded run ends on the markers)."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import pytest
from both_sinks import (
    ingest_both,
    lake_events,
    lake_rejects,
    postgres_events,
    postgres_rejects,
    produce_librdkafka,
    producer,
)
from helpers import all_offsets, end_offsets

from antenna_elt.settings import Settings

T0 = 1_795_489_200  # 2026-11-24T03:00:00Z
DEVICE = "00000000-0000-0000-0000-000000000004"
ANTENNA = "6f1c3b2a-9d4e-4f5a-8b7c-0123456789ab"

# every test here runs once per Kafka client (conftest.kafka_client): each decodes the
# codecs and skips aborted records and transaction markers its own way
pytestmark = pytest.mark.usefixtures("kafka_client")


def event(i: int, app: str = "SKYPE") -> bytes:
    return json.dumps(
        {"timestamp": T0 + i, "id": DEVICE, "antenna_id": ANTENNA, "bytes": i, "app": app}
    ).encode()


@pytest.mark.parametrize("codec", ["gzip", "snappy", "lz4", "zstd"])
def test_every_compression_codec_lands_exactly_in_both_sinks(
    codec: str, settings: Settings, kafka_topic: str, pg_schema: str, pg_conn: Any, tmp_path: Path
) -> None:
    messages = [(i % 3, event(i) if i % 10 else b"not json") for i in range(3000)]
    produce_librdkafka(
        settings, kafka_topic, messages, **{"compression.type": codec, "linger.ms": 100}
    )
    lake = tmp_path / "lake"

    ingest_both(kafka_topic, pg_schema, lake, tmp_path, "--batch-size", "1000")

    events = postgres_events(pg_conn, pg_schema, kafka_topic)
    rejects = postgres_rejects(pg_conn, pg_schema, kafka_topic)
    assert events == lake_events(lake)
    assert rejects == lake_rejects(lake)
    assert sorted([e[:2] for e in events] + [r[:2] for r in rejects]) == all_offsets(
        end_offsets(settings, kafka_topic)
    )
    assert sorted(e[5] for e in events) == [i for i in range(3000) if i % 10]
    assert {(r[2], r[3]) for r in rejects} == {("not_json", b"not json")}


def test_only_committed_transactions_land_and_a_bounded_run_ends_on_the_markers(
    settings: Settings, kafka_topic: str, pg_schema: str, pg_conn: Any, tmp_path: Path
) -> None:
    p = producer(settings, **{"transactional.id": f"test-{uuid.uuid4().hex[:8]}"})
    p.init_transactions(30)

    def transaction(values: list[tuple[int, bytes]], commit: bool) -> None:
        p.begin_transaction()
        for partition, value in values:
            p.produce(kafka_topic, value=value, partition=partition)
        p.flush(30)
        if commit:
            p.commit_transaction(30)
        else:
            p.abort_transaction(30)

    transaction([(i % 3, event(i, "COMMITTED")) for i in range(30)], commit=True)
    transaction([(i % 3, event(100 + i, "ABORTED")) for i in range(12)], commit=False)
    # the last record of every partition is the marker of a committed transaction
    transaction([(i % 3, event(200 + i, "COMMITTED")) for i in range(6)], commit=True)
    ends = end_offsets(settings, kafka_topic)
    # 36 committed and 12 aborted records, and a marker a partition per transaction
    assert sum(ends.values()) == 36 + 12 + 3 * 3
    lake = tmp_path / "lake"

    ingest_both(kafka_topic, pg_schema, lake, tmp_path, timeout=120)

    events = postgres_events(pg_conn, pg_schema, kafka_topic)
    assert events == lake_events(lake)
    assert postgres_rejects(pg_conn, pg_schema, kafka_topic) == lake_rejects(lake) == []
    assert sorted(e[5] for e in events) == [*range(30), *range(200, 206)]
    assert {e[6] for e in events} == {"COMMITTED"}
