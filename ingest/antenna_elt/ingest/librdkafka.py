"""The confluent-kafka client: librdkafka (C) fetches and decodes on its own threads, and
the consumer process only turns messages into the batch's tuples.

Same protocol as kafka-python, one difference in how: librdkafka refuses to seek a
partition before it fetches (``Local: Erroneous state``), so the start offset of an
assigned partition is set in the assignment callback itself. The callbacks run inside
:meth:`LibrdkafkaConsumer.poll`, in the loop's thread, so the loop acts on a rebalance
right there (its rebalance hook: finish the batch being written, read the sink's stored
offsets, "seek"); the seeks made during the callback become the offsets the partitions
are assigned at. Records fetched for them afterwards start there, so none is dropped.

confluent-kafka is imported inside functions so that ``--help`` stays instant.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any, NamedTuple

from antenna_elt.clock import Clock
from antenna_elt.ingest.consumer import Client, Consumer, Polled

log = logging.getLogger("antenna_elt.ingest")

OFFSET_BEGINNING = -2
"""librdkafka's logical offset for the start of a partition."""


def consumer_config(bootstrap_servers: str, group_id: str) -> dict[str, Any]:
    """librdkafka settings of every ingestor (and of the benchmark's consume-only
    ceiling): the same semantics as kafka-python's :data:`CONSUMER_SETTINGS`."""
    return {
        "bootstrap.servers": bootstrap_servers,
        "group.id": group_id,
        "client.id": f"antenna-elt-{group_id}",
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "auto.offset.reset": "earliest",
        # aborted transactions are never returned; positions move past markers; end
        # offsets are the last stable offset
        "isolation.level": "read_committed",
        # as kafka-python's: 4 MiB a fetch, 1 MiB a partition
        "fetch.max.bytes": 4 * 1024 * 1024,
        "max.partition.fetch.bytes": 1024 * 1024,
        "fetch.min.bytes": 1,
        "fetch.wait.max.ms": 200,
        "check.crcs": False,
        # the pre-fetch queue (one for the consumer): librdkafka's default of 64 MiB would
        # dominate the ingestor's memory, so its bytes are bounded, to 2 MiB. What makes a
        # small queue fast is how long a partition waits once the queue is full: its
        # fetches are postponed by fetch.queue.backoff.ms, 1,000 ms by default, so the
        # fetcher idled most of every second (consume-only 103k messages/s at 8 MiB;
        # 800-970k at 2-8 MiB with 10 ms; same topic and machine, 2026-11-27); 2 MiB
        # rather than 4 keeps ~7 MiB less at the same rates of both ingestors, which their
        # writers bound. Its count bound is a partition's: above what the bytes hold, so
        # the bytes are the bound.
        # README, Benchmarks (BENCH_PARTS=clients).
        "queued.max.messages.kbytes": 2 * 1024,
        "queued.min.messages": 200_000,
        "fetch.queue.backoff.ms": 10,
        "session.timeout.ms": 10_000,
        "heartbeat.interval.ms": 3_000,
        # kafka-python's default assignors, so that both clients can share a group
        "partition.assignment.strategy": "range,roundrobin",
        "enable.partition.eof": False,
        # librdkafka's own log lines through logging (quiet unless --log-level DEBUG)
        "logger": logging.getLogger("kafka.librdkafka"),
        "error_cb": _on_error,
    }


def _on_error(error: Any) -> None:
    # transport errors while a broker restarts: the lag line says it once
    log.debug("librdkafka: %s", error)


def confluent_consumer(config: dict[str, Any]) -> Any:
    from confluent_kafka import Consumer as ConfluentConsumer

    return ConfluentConsumer(config)


class Partition(NamedTuple):
    """A topic-partition as the loop sees it (hashable; librdkafka's is mutable)."""

    topic: str
    partition: int


class LibrdkafkaConsumer:
    """:class:`~antenna_elt.ingest.consumer.Consumer` over a ``confluent_kafka.Consumer``
    (or anything with its methods: the unit tests' scripted consumer)."""

    def __init__(self, consumer: Any):
        self.raw = consumer
        self._listener: Any = None
        self._topic = ""
        self._hook: Callable[[], object] | None = None
        self._assigned: set[Partition] = set()
        self._assigning: dict[int, int] | None = None
        """While the assignment callback runs: partition -> start offset chosen."""
        self._starts: dict[int, int] = {}
        """The offset each partition was assigned or seeked at (its position until the
        first message arrives)."""
        self._warned: set[str] = set()

    @staticmethod
    def _tp(topic: str, partition: int, offset: int | None = None) -> Any:
        from confluent_kafka import TopicPartition

        if offset is None:
            return TopicPartition(topic, partition)
        return TopicPartition(topic, partition, offset)

    # -- subscription and rebalances ----------------------------------------------------

    def subscribe(self, topic: str, listener: Any) -> None:
        self._listener = listener
        self._topic = topic
        self.raw.subscribe(
            [topic], on_assign=self._on_assign, on_revoke=self._on_revoke, on_lost=self._on_lost
        )

    def set_rebalance_hook(self, hook: Callable[[], object] | None) -> None:
        self._hook = hook

    def _on_assign(self, consumer: Any, partitions: list[Any]) -> None:
        tps = [Partition(p.topic, p.partition) for p in partitions]
        self._assigned.update(tps)
        self._listener.on_partitions_assigned(tps)
        self._assigning = {}
        try:
            if self._hook is not None:
                self._hook()  # seeks land in self._assigning
            for p in partitions:
                start = self._assigning.get(p.partition)
                if start is not None:
                    p.offset = start
                    self._starts[p.partition] = start
        finally:
            self._assigning = None
        consumer.assign(partitions)

    def _on_revoke(self, consumer: Any, partitions: list[Any]) -> None:
        self._revoked(partitions)
        consumer.unassign()

    def _on_lost(self, consumer: Any, partitions: list[Any]) -> None:
        self._revoked(partitions)
        consumer.unassign()

    def _revoked(self, partitions: list[Any]) -> None:
        tps = [Partition(p.topic, p.partition) for p in partitions]
        self._assigned.difference_update(tps)
        for tp in tps:
            self._starts.pop(tp.partition, None)
        self._listener.on_partitions_revoked(tps)
        if self._hook is not None:
            self._hook()

    # -- reading ---------------------------------------------------------------------------

    def poll(self, timeout_ms: int, max_records: int) -> dict[Any, Polled]:
        # consume(n, timeout) returns only when it holds n messages or the timeout is over,
        # so a quiet stream would wait out every poll's timeout (a batch's whole age):
        # wait for the first message only, then take what is queued behind it
        first = self.raw.poll(timeout_ms / 1000)
        if first is None:
            return {}
        messages = [first]
        if max_records > 1:
            messages += self.raw.consume(num_messages=max_records - 1, timeout=0)
        lists: dict[int, list[Any]] = {}
        sizes: dict[int, int] = {}
        current = -1
        out: list[Any] = []
        for m in messages:
            if m.error() is not None:
                self._error(m.error())
                continue
            partition = m.partition()
            if partition != current:  # librdkafka returns runs of one partition
                current = partition
                out = lists.setdefault(partition, [])
                sizes.setdefault(partition, 0)
            value = m.value()
            out.append((partition, m.offset(), value, m.timestamp()[1]))
            if value is not None:
                sizes[partition] += len(value)
        topic = self._topic
        return {Partition(topic, p): Polled(msgs, sizes[p]) for p, msgs in lists.items()}

    def _error(self, error: Any) -> None:
        if error.fatal():
            from confluent_kafka import KafkaException

            raise KafkaException(error)
        text = str(error)
        if text not in self._warned:  # once each: a missing topic repeats every poll
            self._warned.add(text)
            log.warning("Kafka: %s", text)

    def assignment(self) -> set[Any]:
        return set(self._assigned)

    def seek(self, tp: Any, offset: int) -> None:
        if self._assigning is not None and tp in self._assigned:
            self._assigning[tp.partition] = offset
            return
        self.raw.seek(self._tp(tp.topic, tp.partition, offset))
        self._starts[tp.partition] = offset

    def seek_to_beginning(self, tp: Any) -> None:
        if self._assigning is not None and tp in self._assigned:
            self._assigning[tp.partition] = OFFSET_BEGINNING
            return
        low, _ = self.raw.get_watermark_offsets(self._tp(tp.topic, tp.partition), timeout=10)
        self.seek(tp, int(low))

    def _positions(self) -> dict[Partition, int | None]:
        if not self._assigned:
            return {}
        tps = sorted(self._assigned)
        found = self.raw.position([self._tp(tp.topic, tp.partition) for tp in tps])
        result: dict[Partition, int | None] = {}
        for tp, at in zip(tps, found, strict=True):
            offset = int(at.offset)
            if offset < 0:  # nothing returned since the assignment: where it started
                start = self._starts.get(tp.partition)
                offset = start if start is not None and start >= 0 else -1
            result[tp] = offset if offset >= 0 else None
        return result

    def position(self, tp: Any) -> int | None:
        return self._positions().get(Partition(tp.topic, tp.partition))

    def caught_up(self) -> bool:
        positions = self._positions()
        if not positions:
            return False
        for tp, at in positions.items():
            _, high = self.raw.get_watermark_offsets(self._tp(tp.topic, tp.partition), cached=True)
            if at is None or high < 0 or at < high:
                return False
        return True

    def end_offsets(self, tps: list[Any], timeout_ms: int) -> dict[Any, int]:
        return {
            tp: int(
                self.raw.get_watermark_offsets(
                    self._tp(tp.topic, tp.partition), timeout=timeout_ms / 1000
                )[1]
            )
            for tp in tps
        }

    def partitions_for_topic(self, topic: str) -> set[int] | None:
        metadata = self.raw.list_topics(topic, timeout=10)
        found = metadata.topics.get(topic)
        if found is None or found.error is not None or not found.partitions:
            return None
        return set(found.partitions)

    def topic_partition(self, topic: str, partition: int) -> Any:
        return Partition(topic, partition)

    # -- committing, waiting, closing ------------------------------------------------------

    def commit_offsets(self, topic: str, offsets: dict[int, int]) -> None:
        owned = {tp.partition for tp in self._assigned}
        tps = [self._tp(topic, p, o) for p, o in sorted(offsets.items()) if p in owned]
        if tps:
            self.raw.commit(offsets=tps, asynchronous=True)

    def keep_alive(self, seconds: float, clock: Clock, stop: threading.Event) -> None:
        """librdkafka heartbeats on its own thread: just wait (no poll, so no rebalance
        callback runs in the middle of a retry; past max.poll.interval.ms the consumer
        leaves the group and joins again on the next poll)."""
        clock.wait(seconds, stop)

    def close(self) -> None:
        self._hook = None
        self.raw.close()


def _unreachable(exc: BaseException) -> bool:
    from confluent_kafka import KafkaException

    return isinstance(exc, KafkaException)


def _open(factory: Callable[..., Any], bootstrap_servers: str, group_id: str) -> Consumer:
    consumer = factory(consumer_config(bootstrap_servers, group_id))
    try:
        # librdkafka connects in the background: ask for the cluster's metadata so that
        # an unreachable Kafka shows here, as it does with kafka-python
        consumer.list_topics(timeout=10)
    except Exception:
        consumer.close()
        raise
    return LibrdkafkaConsumer(consumer)


CLIENT = Client(
    name="librdkafka", open=_open, default_factory=confluent_consumer, unreachable=_unreachable
)
