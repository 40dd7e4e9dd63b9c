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
from antenna_elt.ingest.consumer import KAFKA_PYTHON, LIBRDKAFKA
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


class ScriptedTopic:
    """An in-memory topic and consumer group seen by one consumer: what both scripted
    clients share. The first poll joins the group (all partitions assigned);
    :meth:`rebalance` moves partitions later. ``script[n]`` runs before the n-th poll
    (1-based). A poll that returns nothing advances the clock by its timeout, as a real
    poll would wait."""

    client = KAFKA_PYTHON

    def __init__(
        self,
        clock: FakeClock,
        partitions: dict[int, list[Any]],
        *,
        per_poll: int | None = None,
        fetch_on_join: bool = False,
        script: dict[int, Callable[[Any], None]] | None = None,
        poll_cost: float = 0.0,
    ):
        self.clock = clock
        self.poll_cost = poll_cost
        """Seconds every poll takes even when it returns records at once."""
        self.log = {p: list(values) for p, values in partitions.items()}
        self.per_poll = per_poll
        self.fetch_on_join = fetch_on_join
        """Return records in the poll that joins the group (kafka-python can: its poll
        goes on fetching after the rebalance callbacks, within its timeout)."""
        self.script = dict(script or {})
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
        raise NotImplementedError

    # -- shared by both clients -------------------------------------------------------

    def _start_poll(self) -> bool:
        """Run the script and join the group; False: this poll returns nothing."""
        self.polls += 1
        self.clock.advance(self.poll_cost)
        if self.polls in self.script:
            self.script.pop(self.polls)(self)
        if not self.joined:
            self.joined = True
            self.rebalance(self.log)
            return self.fetch_on_join
        return True

    def _fetch(self, max_records: int | None) -> list[tuple[int, int, Any, int]]:
        """(partition, offset, value, timestamp ms) of the records a poll returns."""
        limit = min(x for x in (max_records, self.per_poll, 10**9) if x is not None)
        fetched: list[tuple[int, int, Any, int]] = []
        for tp in sorted(self.assigned - self.paused, key=lambda t: t.partition):
            position = self.positions.get(tp.partition, 0)
            while position < len(self.log[tp.partition]) and len(fetched) < limit:
                value = self.log[tp.partition][position]
                if value is not CONTROL:
                    fetched.append((tp.partition, position, value, int(self.clock.time() * 1000)))
                position += 1
            self.positions[tp.partition] = position
        return fetched

    def _seek(self, partition: int, offset: int | str) -> None:
        self.positions[partition] = 0 if offset == "beginning" else int(offset)
        self.seeks.append((partition, offset))


class ScriptedConsumer(ScriptedTopic):
    """The KafkaConsumer methods the loop uses (poll, assignment, seek,
    seek_to_beginning, position, highwater, pause, resume, end_offsets,
    partitions_for_topic, commit_async, close), over an in-memory topic."""

    def __new__(cls, *args: Any, **kwargs: Any) -> Any:
        if cls is ScriptedConsumer and CLIENT[0] == LIBRDKAFKA:
            return ScriptedLibrdkafka(*args, **kwargs)
        return super().__new__(cls)

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.listener: Any = None

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
        result: dict[Any, list[Any]] = {}
        if self._start_poll():
            for partition, offset, value, ts in self._fetch(max_records):
                result.setdefault(TopicPartition(TOPIC, partition), []).append(
                    Record(offset, value, ts)
                )
        if not result:
            self.clock.advance(timeout_ms / 1000)
        return result

    def assignment(self) -> set[TopicPartition]:
        return set(self.assigned)

    def seek(self, tp: TopicPartition, offset: int) -> None:
        self._seek(tp.partition, offset)

    def position(self, tp: TopicPartition, timeout_ms: int | None = None) -> int:
        assert tp in self.assigned, "kafka-python raises IllegalStateError"
        return self.positions.get(tp.partition, 0)

    def highwater(self, tp: TopicPartition) -> int:
        assert tp in self.assigned, "kafka-python raises IllegalStateError"
        return len(self.log[tp.partition])

    def seek_to_beginning(self, tp: TopicPartition) -> None:
        self._seek(tp.partition, "beginning")

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


class ScriptedLibrdkafka(ScriptedTopic):
    """The confluent_kafka.Consumer methods the librdkafka adapter uses (consume, assign,
    unassign, seek, position, get_watermark_offsets, list_topics, commit, close), over an
    in-memory topic, with librdkafka's rules: rebalance callbacks run inside consume; a
    partition assigned without an offset starts at Kafka's committed offset; seeking a
    partition assigned in the last consume fails (``Local: Erroneous state``)."""

    client = LIBRDKAFKA

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.callbacks: dict[str, Any] = {}
        self.starting: set[int] = set()
        """Partitions assigned during the last consume: not fetching yet."""
        self._drain: int | None = None
        """After a poll that returned a message: how many more the next drain may take."""

    def rebalance(self, assigned: Iterable[int]) -> None:
        """Revoke every partition, then assign ``assigned`` (eager protocol), each through
        its callback; a callback that does not (un)assign leaves it to the client."""
        from confluent_kafka import TopicPartition as TP

        revoked = sorted(self.assigned, key=lambda t: t.partition)
        if revoked:
            self._assign_calls = 0
            self.callbacks["on_revoke"](self, [TP(TOPIC, tp.partition) for tp in revoked])
            self.assigned = set()
        wanted = sorted(assigned)
        self._assign_calls = 0
        self.callbacks["on_assign"](self, [TP(TOPIC, p) for p in wanted])
        if not self._assign_calls:
            self.assign([TP(TOPIC, p) for p in wanted])

    # -- confluent_kafka.Consumer -------------------------------------------------------

    def subscribe(self, topics: list[str], on_assign: Any, on_revoke: Any, on_lost: Any) -> None:
        assert topics == [TOPIC]
        self.callbacks = {"on_assign": on_assign, "on_revoke": on_revoke, "on_lost": on_lost}

    def assign(self, partitions: list[Any]) -> None:
        self._assign_calls += 1
        self.assigned = {TopicPartition(TOPIC, p.partition) for p in partitions}
        for p in partitions:
            if p.offset >= 0:
                self._seek(p.partition, p.offset)
            elif p.offset == -2:  # OFFSET_BEGINNING
                self._seek(p.partition, "beginning")
            else:  # OFFSET_INVALID: Kafka's committed offset
                self.positions[p.partition] = self.committed.get(p.partition, 0)
            self.starting.add(p.partition)

    def unassign(self) -> None:
        self._assign_calls += 1
        self.assigned = set()

    def consume(self, num_messages: int = 1, timeout: float = -1) -> list[Any]:
        """librdkafka's batch consume returns when it holds ``num_messages`` or when the
        timeout is over: with fewer messages queued, it waits the whole timeout. A call
        with no timeout right after :meth:`poll` only drains what that poll's fetch
        left queued (it is not a scripted poll of its own)."""
        if timeout == 0 and self._drain is not None:
            budget, self._drain = self._drain, None
            return self._messages(self._fetch(min(num_messages, budget)))
        self.starting = set()
        result = []
        if self._start_poll():
            result = self._messages(self._fetch(num_messages))
        if len(result) < num_messages and timeout > 0:
            self.clock.advance(timeout)
        return result

    def poll(self, timeout: float = -1) -> Any:
        """One message, or None after waiting the whole timeout (a scripted poll)."""
        self.starting = set()
        fetched = self._fetch(1) if self._start_poll() else []
        if not fetched:
            self.clock.advance(timeout)
            return None
        self._drain = (self.per_poll or 10**9) - 1
        return self._messages(fetched)[0]

    @staticmethod
    def _messages(fetched: list[tuple[int, int, Any, int]]) -> list[Any]:
        from confluent_kafka import Message

        return [
            Message(topic=TOPIC, partition=p, offset=o, value=v, timestamp=(1, ts))
            for p, o, v, ts in fetched
        ]

    def seek(self, partition: Any) -> None:
        from confluent_kafka import KafkaError, KafkaException

        if partition.partition in self.starting or all(
            tp.partition != partition.partition for tp in self.assigned
        ):
            raise KafkaException(KafkaError(KafkaError._STATE, "Erroneous state"))
        self._seek(partition.partition, partition.offset)

    def position(self, partitions: list[Any]) -> list[Any]:
        from confluent_kafka import TopicPartition as TP

        return [TP(TOPIC, p.partition, self.positions.get(p.partition, -1001)) for p in partitions]

    def get_watermark_offsets(
        self, partition: Any, timeout: float = -1, cached: bool = False
    ) -> tuple[int, int]:
        return 0, len(self.log[partition.partition])

    def list_topics(self, topic: str | None = None, timeout: float = -1) -> Any:
        from types import SimpleNamespace

        found = SimpleNamespace(partitions=dict.fromkeys(self.log), error=None)
        return SimpleNamespace(topics={TOPIC: found} if topic in (None, TOPIC) else {})

    def commit(self, offsets: list[Any], asynchronous: bool = True) -> None:
        self.commits.append({tp.partition: tp.offset for tp in offsets})
        self.committed.update(self.commits[-1])

    def close(self) -> None:
        self.closed = True


CLIENT = [KAFKA_PYTHON]
"""The client the scripted consumers of this test stand for (``use_client``)."""


def use_client(name: str) -> None:
    """Make :class:`ScriptedConsumer` stand for ``name``'s consumer (kafka-python's by
    default): the unit tier runs the loop's tests against both clients' adapters."""
    CLIENT[0] = name


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


class ClockedWriter:
    """Writes in the calling thread, but a write takes ``seconds`` of the fake clock from
    when it is submitted: until then its future is not done (the writer is busy), and
    waiting for its result moves the clock to its end."""

    where = "the loop's thread, on a fake clock"

    def __init__(self, sink_factory: Callable[[], Any], clock: FakeClock, seconds: float):
        self.inner = InProcessWriter(sink_factory)
        self.clock = clock
        self.seconds = seconds
        self.submitted: list[tuple[float, int]] = []
        """(clock reading, messages) of every batch submitted."""
        self.prepared: list[tuple[int, bool]] = []
        """(messages, whether the write before was still running) of every prepare."""
        self.handed: list[bool] = []
        """Whether each submit got the prepare of its own batch."""
        self._last: _ClockedFuture | None = None

    def prepare(self, batch: Batch) -> object:
        busy = self._last is not None and not self._last.done()
        self.prepared.append((len(batch), busy))
        return ("prepared", id(batch), len(batch))

    def submit(self, batch: Batch, prepared: object = None) -> Any:
        self.submitted.append((self.clock.now, len(batch)))
        self.handed.append(prepared == ("prepared", id(batch), len(batch)))
        self._last = _ClockedFuture(
            self.inner.submit(batch), self.clock, self.clock.now + self.seconds
        )
        return self._last

    def restart(self) -> None:
        self.inner.restart()

    def shutdown(self) -> None:
        self.inner.shutdown()


class _ClockedFuture:
    def __init__(self, inner: Any, clock: FakeClock, ready_at: float):
        self.inner, self.clock, self.ready_at = inner, clock, ready_at

    def done(self) -> bool:
        return self.clock.now >= self.ready_at

    def result(self) -> Any:
        self.clock.now = max(self.clock.now, self.ready_at)
        return self.inner.result()


def memory_loop(
    consumer: ScriptedTopic,
    store: Store,
    *,
    batch_size: int = 1000,
    max_latency: float = 60.0,
    max_batch_bytes: int | None = None,
    until_caught_up: bool = True,
    max_messages: int | None = None,
    idle_timeout: float | None = 3600.0,
    flush_when_caught_up: bool = False,
    write_seconds: float | None = None,
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
        client=consumer.client,
        flush_when_caught_up=flush_when_caught_up,
    )
    return IngestLoop(
        functools.partial(MemorySink, store, consumer.clock),
        options,
        consumer_factory=lambda *_, **__: consumer,
        writer_factory=(
            InProcessWriter
            if write_seconds is None
            else functools.partial(ClockedWriter, clock=consumer.clock, seconds=write_seconds)
        ),
        clock=consumer.clock,
    )
