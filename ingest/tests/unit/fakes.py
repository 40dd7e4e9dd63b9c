"""Stand-ins for the unit tier: a fake clock, a scripted consumer with the few
KafkaConsumer methods the loop calls, and an in-memory sink. The integration tests never
use them: there the real broker and server run."""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from kafka import TopicPartition

from antenna_elt.ingest.batch import Batch
from antenna_elt.ingest.loop import IngestLoop, LoopOptions
from antenna_elt.ingest.sink import SinkUnavailable, StaleBatch
from antenna_elt.ingest.writer import InProcessWriter

TOPIC = "devices"
CONTROL = object()
"""A log entry poll never returns but the position moves past: a transaction marker (or
a record of an aborted transaction, for a read-committed consumer)."""


class FakeClock:
    """Time that moves only when the code under test waits (or a test says so)."""

    def __init__(self, start: float = 1_000.0, wall: float = 1_795_489_200.0):
        self.now = start
        self.wall_offset = wall - start
        self.waits: list[float] = []

    def monotonic(self) -> float:
        return self.now

    def time(self) -> float:
        return self.now + self.wall_offset

    def advance(self, seconds: float) -> None:
        self.now += seconds

    def wait(self, seconds: float, stop: threading.Event | None = None) -> bool:
        self.waits.append(seconds)
        if stop is not None and stop.is_set():
            return True
        self.advance(seconds)
        return stop is not None and stop.is_set()


@dataclass
class Record:
    offset: int
    value: bytes | None
    timestamp: int = -1
    """Kafka's record timestamp in ms (-1: none)."""


class ScriptedConsumer:
    """An in-memory topic behind the KafkaConsumer methods the loop uses (poll,
    assignment, seek, seek_to_beginning, pause, resume, end_offsets,
    partitions_for_topic, commit_async, close). The first poll joins the group (all
    partitions assigned through the listener); :meth:`rebalance` moves partitions later.
    ``script[n]`` runs before the n-th poll (1-based). A poll that returns nothing
    advances the clock by its timeout, as a real poll would wait."""

    def __init__(
        self,
        clock: FakeClock,
        partitions: dict[int, list[Any]],
        *,
        per_poll: int | None = None,
        fetch_on_join: bool = False,
        script: dict[int, Callable[[ScriptedConsumer], None]] | None = None,
    ):
        self.clock = clock
        self.log = {p: list(values) for p, values in partitions.items()}
        self.per_poll = per_poll
        self.fetch_on_join = fetch_on_join
        """Return records in the poll that joins the group (kafka-python can: its poll
        goes on fetching after the rebalance callbacks, within its timeout)."""
        self.script = dict(script or {})
        self.listener: Any = None
        self.assigned: set[TopicPartition] = set()
        self.paused: set[TopicPartition] = set()
        self.positions: dict[int, int] = {}
        self.seeks: list[tuple[int, int | str]] = []
        self.commits: list[dict[int, int]] = []
        self.committed: dict[int, int] = {}
        self.polls = 0
        self.closed = False
        self.joined = False

    # -- what a test does -------------------------------------------------------------

    def produce(self, partition: int, value: Any) -> None:
        self.log[partition].append(value)

    def rebalance(self, assigned: Iterable[int]) -> None:
        """Revoke every partition, then assign ``assigned`` (eager rebalance protocol);
        like kafka-python, an assigned partition fetches from Kafka's committed offset."""
        wanted = {TopicPartition(TOPIC, p) for p in assigned}
        revoked, self.assigned = self.assigned, set()
        self.listener.on_partitions_revoked(revoked)
        self.assigned = wanted
        self.positions = {tp.partition: self.committed.get(tp.partition, 0) for tp in wanted}
        self.listener.on_partitions_assigned(wanted)

    # -- KafkaConsumer ------------------------------------------------------------------

    def subscribe(self, topics: list[str], listener: Any) -> None:
        assert topics == [TOPIC]
        self.listener = listener

    def poll(self, timeout_ms: int = 0, max_records: int | None = None) -> dict[Any, list[Any]]:
        self.polls += 1
        if self.polls in self.script:
            self.script.pop(self.polls)(self)
        if not self.joined:
            self.joined = True
            self.rebalance(self.log)
            if not self.fetch_on_join:
                self.clock.advance(timeout_ms / 1000)
                return {}
        limit = min(x for x in (max_records, self.per_poll, 10**9) if x is not None)
        result: dict[Any, list[Any]] = {}
        taken = 0
        for tp in sorted(self.assigned - self.paused, key=lambda t: t.partition):
            position = self.positions.get(tp.partition, 0)
            records = []
            while position < len(self.log[tp.partition]) and taken < limit:
                value = self.log[tp.partition][position]
                if value is not CONTROL:
                    records.append(Record(position, value, int(self.clock.time() * 1000)))
                    taken += 1
                position += 1
            self.positions[tp.partition] = position
            if records:
                result[tp] = records
        if not result:
            self.clock.advance(timeout_ms / 1000)
        return result

    def assignment(self) -> set[TopicPartition]:
        return set(self.assigned)

    def seek(self, tp: TopicPartition, offset: int) -> None:
        self.positions[tp.partition] = offset
        self.seeks.append((tp.partition, offset))

    def position(self, tp: TopicPartition, timeout_ms: int | None = None) -> int:
        assert tp in self.assigned, "kafka-python raises IllegalStateError"
        return self.positions.get(tp.partition, 0)

    def seek_to_beginning(self, tp: TopicPartition) -> None:
        self.positions[tp.partition] = 0
        self.seeks.append((tp.partition, "beginning"))

    def pause(self, *tps: TopicPartition) -> None:
        self.paused.update(tps)

    def resume(self, *tps: TopicPartition) -> None:
        self.paused.difference_update(tps)

    def end_offsets(self, tps: list[TopicPartition], timeout_ms: int | None = None) -> dict:
        return {tp: len(self.log[tp.partition]) for tp in tps}

    def partitions_for_topic(self, topic: str) -> set[int]:
        return set(self.log) if topic == TOPIC else set()

    def commit_async(self, offsets: dict[Any, Any], callback: Any = None) -> None:
        self.commits.append({tp.partition: meta.offset for tp, meta in offsets.items()})
        self.committed.update(self.commits[-1])

    def close(self, autocommit: bool = True) -> None:
        self.closed = True


@dataclass
class Store:
    """What an in-memory sink holds: rows and next offsets, written together."""

    offsets: dict[int, int] = field(default_factory=dict)
    landed: list[tuple[int, int]] = field(default_factory=list)
    """(partition, offset) of every message written, duplicates kept."""
    batches: list[tuple[float, int]] = field(default_factory=list)
    """(clock reading, messages) of every successful write."""
    attempts: int = 0
    unavailable: int = 0
    """Fail this many upcoming writes with SinkUnavailable (nothing written)."""
    before_write: Callable[[Store], None] | None = None
    """Runs once, before the next write (e.g. another writer lands offsets first)."""

    def land(self, partition: int, offsets: range) -> None:
        self.landed += [(partition, o) for o in offsets]
        self.offsets[partition] = offsets.stop


class MemorySink:
    description = "memory sink"

    def __init__(self, store: Store, clock: FakeClock):
        self.store = store
        self.clock = clock

    def setup(self) -> None:
        pass

    def stored_offsets(self, topic: str, partitions: Iterable[int]) -> dict[int, int]:
        return {p: self.store.offsets[p] for p in partitions if p in self.store.offsets}

    def write(self, batch: Batch) -> tuple[int, int]:
        store = self.store
        store.attempts += 1
        if store.before_write is not None:
            hook, store.before_write = store.before_write, None
            hook(store)
        if store.unavailable:
            store.unavailable -= 1
            raise SinkUnavailable("memory sink is down")
        for partition, first in batch.first_offsets.items():
            if store.offsets.get(partition, 0) > first:
                raise StaleBatch(
                    f"partition {partition} is already stored up to offset "
                    f"{store.offsets[partition]} but this batch starts at {first}"
                )
        rows, rejects = batch.split()
        store.landed += [(p, o) for p, o, *_ in batch.messages]
        store.offsets.update(batch.next_offsets)
        store.batches.append((self.clock.now, len(batch)))
        return len(rows), len(rejects)

    def close(self) -> None:
        pass


def memory_loop(
    consumer: ScriptedConsumer,
    store: Store,
    *,
    batch_size: int = 1000,
    max_latency: float = 60.0,
    max_batch_bytes: int | None = None,
    until_caught_up: bool = True,
    max_messages: int | None = None,
    idle_timeout: float | None = 3600.0,
) -> IngestLoop:
    """The real loop, with the scripted consumer, the in-memory sink written in-process
    and the fake clock."""
    options = LoopOptions(
        topic=TOPIC,
        group_id="unit",
        bootstrap_servers="scripted:9092",
        batch_size=batch_size,
        max_latency=max_latency,
        max_batch_bytes=max_batch_bytes,
        until_caught_up=until_caught_up,
        max_messages=max_messages,
        log_interval=1e9,
        # a bounded run that never ends fails instead (on the fake clock: instantly)
        idle_timeout=idle_timeout if until_caught_up else None,
    )
    return IngestLoop(
        functools.partial(MemorySink, store, consumer.clock),
        options,
        consumer_factory=lambda **_: consumer,
        writer_factory=InProcessWriter,
        clock=consumer.clock,
    )
