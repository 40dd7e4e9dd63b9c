"""Any number of ingestor instances in one consumer group, zombies included, commit every
offset once: the sinks fence each other, whatever Kafka's group protocol lets through."""

from __future__ import annotations

import functools
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from both_sinks import Run, start_ingestor
from helpers import (
    all_offsets,
    end_offsets,
    produce,
    signal_tree,
    staged_offsets,
    unique_group,
    wait_for,
)
from lake_helpers import lake_offsets, leftovers, read_lake

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


# -- instances of one group under forced rebalances ----------------------------------------


class Producer(threading.Thread):
    """Produces while the instances come and go: 500 messages every 0.2 s, a contract
    breaker in every 97, until stopped; remembers the bytes sent."""

    def __init__(self, settings: Settings, topic: str):
        super().__init__(daemon=True)
        self.settings, self.topic = settings, topic
        self.stop = threading.Event()
        self.sent = 0
        self.total_bytes = 0

    def run(self) -> None:
        while not self.stop.is_set():
            chunk = []
            for i in range(self.sent, self.sent + 500):
                if i % 97 == 96:
                    chunk.append((i % 3, b"{broken"))
                else:
                    chunk.append((i % 3, event(i)))
                    self.total_bytes += i
            produce(self.settings, self.topic, chunk)
            self.sent += len(chunk)
            time.sleep(0.2)


def owns_partitions(run: Run, times: int = 1) -> Callable[[], bool]:
    return lambda: run.text().count("resuming at stored offsets") >= times


def churn(sink: str, topic: str, tmp_path: Path, settings: Settings, *args: str) -> Producer:
    """Instance A runs throughout; instance B joins and leaves the group five times while
    a producer writes: each join and leave moves partitions. Twice B is frozen (SIGSTOP,
    its writer too) past the session timeout, so the group gives its partitions to A, and
    then thawed: a zombie that finishes the batch it was writing. Ends with a clean
    bounded run of the same group; returns the producer (what was sent)."""
    group = unique_group()
    flags = ("--batch-size", "400", "--max-latency", "0.2", *args)
    producer = Producer(settings, topic)
    producer.start()
    a = start_ingestor(sink, topic, tmp_path, *flags, group=group)
    try:
        wait_for(owns_partitions(a), 90, "instance A to get its partitions")
        for cycle in range(5):
            b = start_ingestor(sink, topic, tmp_path, *flags, group=group)
            try:
                wait_for(owns_partitions(b), 90, f"instance B ({cycle}) to get partitions")
                time.sleep(1.5)  # both write
                if cycle in (1, 3):
                    signal_tree(b.proc.pid, signal.SIGSTOP)
                    time.sleep(14)  # > session.timeout.ms: A takes B's partitions
                    signal_tree(b.proc.pid, signal.SIGCONT)
                    time.sleep(3)
                b.proc.send_signal(signal.SIGTERM)
                assert b.wait(90) == 0, b.text()[-4000:]
            finally:
                if b.proc.poll() is None:
                    b.proc.kill()
            assert a.proc.poll() is None, a.text()[-4000:]
        producer.stop.set()
        producer.join(timeout=60)
        a.proc.send_signal(signal.SIGTERM)
        assert a.wait(90) == 0, a.text()[-4000:]
    finally:
        producer.stop.set()
        if a.proc.poll() is None:
            a.proc.kill()
    final = start_ingestor(sink, topic, tmp_path, *flags, "--until-caught-up", group=group)
    assert final.wait(180) == 0, final.text()[-4000:]
    return producer


@pytest.mark.slow
def test_lake_instances_of_one_group_under_rebalances_and_zombies_commit_every_offset_once(
    settings: Settings, kafka_topic: str, tmp_path: Path
) -> None:
    lake = tmp_path / "lake"
    producer = churn("lake", kafka_topic, tmp_path, settings, "--lake", str(lake))

    ends = end_offsets(settings, kafka_topic)
    assert sum(ends.values()) == producer.sent
    assert sorted(lake_offsets(lake)) == all_offsets(ends)  # every offset once
    assert sum(read_lake(lake).column("bytes").to_pylist()) == producer.total_bytes
    assert leftovers(lake) == []


@pytest.mark.slow
@pytest.mark.usefixtures("kafka_client")  # once per Kafka client: its own rebalance handling
def test_postgres_instances_of_one_group_under_rebalances_and_zombies_commit_every_offset_once(
    settings: Settings, kafka_topic: str, pg_schema: str, pg_conn: Any, tmp_path: Path
) -> None:
    producer = churn("postgres", kafka_topic, tmp_path, settings, "--schema", pg_schema)

    ends = end_offsets(settings, kafka_topic)
    assert sum(ends.values()) == producer.sent
    assert sorted(staged_offsets(pg_conn, pg_schema, kafka_topic)) == all_offsets(ends)
    assert pg_conn.execute(f"select sum(bytes) from {pg_schema}.device_usage").fetchone() == (
        producer.total_bytes,
    )
