"""Any number of ingestor instances in one consumer group, zombies included, commit every
offset once: the sinks fence each other, whatever Kafka's group protocol lets through."""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable
from typing import Any

from helpers import unique_group

from antenna_elt.ingest.batch import Batch
from antenna_elt.ingest.sink import StaleBatch
from antenna_elt.settings import Settings
from antenna_elt.sinks.postgres import PostgresSink

T0 = 1_795_489_200  # 2026-11-24T03:00:00Z
DEVICE = "00000000-0000-0000-0000-000000000004"
ANTENNA = "6f1c3b2a-9d4e-4f5a-8b7c-0123456789ab"


def event(i: int) -> bytes:
    return (
        f'{{"timestamp": {T0 + i % 3600}, "id": "{DEVICE}", "antenna_id": "{ANTENNA}", '
        f'"bytes": {i}, "app": "SKYPE"}}'
    ).encode()


def batch(topic: str, partition: int, offsets: range) -> Batch:
    b = Batch(topic)
    b.messages = [(partition, o, event(o), (T0 + 7200) * 1000) for o in offsets]
    b.first_offsets = {partition: offsets.start}
    b.next_offsets = {partition: offsets.stop}
    return b


def at_once(calls: list[Callable[[], object]]) -> list[str]:
    """Run ``calls`` in threads released together; what each returned or raised."""
    barrier = threading.Barrier(len(calls))
    results: list[str] = []

    def run(call: Callable[[], object]) -> None:
        barrier.wait()
        try:
            results.append(f"committed {call()}")
        except StaleBatch:
            results.append("StaleBatch")
        except Exception as exc:  # shown by the caller's assertion
            results.append(f"error {exc!r}")

    threads = [threading.Thread(target=run, args=(call,)) for call in calls]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    return results


def test_two_postgres_sinks_writing_a_partitions_first_batch_at_once_commit_each_offset_once(
    settings: Settings, pg_schema: str, pg_conn: Any
) -> None:
    group, topic = unique_group(), "race"
    sinks = [PostgresSink(settings.pg_conninfo, pg_schema, group) for _ in range(2)]
    sinks[0].setup()
    for sink in sinks:
        sink.stored_offsets(topic, [0])  # connected: the race is in the write
    outcomes: dict[int, list[str]] = {}
    for partition in range(12):
        # overlapping batches of a partition nobody wrote yet: 0-999 and 0-1099
        first, second = batch(topic, partition, range(1000)), batch(topic, partition, range(1100))
        outcomes[partition] = sorted(
            at_once(
                [
                    functools.partial(sinks[0].write, first),
                    functools.partial(sinks[1].write, second),
                ]
            )
        )

    counts = dict(
        pg_conn.execute(
            f"select kafka_partition, count(*) - count(distinct kafka_offset) from {pg_schema}.device_usage group by 1"
        ).fetchall()
    )
    assert pg_conn.execute(f"select count(*) from {pg_schema}.device_usage_rejects").fetchone() == (
        0,
    )
    assert counts == {p: 0 for p in range(12)}  # no offset twice
    stored = dict(
        pg_conn.execute(
            f"select partition, next_offset from {pg_schema}.ingest_offsets where consumer_group = %s",
            (group,),
        ).fetchall()
    )
    rows = dict(
        pg_conn.execute(
            f"select kafka_partition, count(*) from {pg_schema}.device_usage group by 1"
        ).fetchall()
    )
    # exactly one writer committed each partition: its rows and its next offset
    for partition, results in outcomes.items():
        assert results in (
            ["StaleBatch", "committed (1000, 0)"],
            ["StaleBatch", "committed (1100, 0)"],
        )
        assert rows[partition] == stored[partition] == int(results[1][11:15])
    for sink in sinks:
        sink.close()
