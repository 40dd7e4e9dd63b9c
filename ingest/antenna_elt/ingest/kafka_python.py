"""The kafka-python client (pure Python): the ingestors' consumer by default.

kafka-python decodes records in Python (about 6 µs a message here), so its consumer takes
a whole core; the writer process validates and writes beside it. Rebalance callbacks
only record what changed (:class:`~antenna_elt.ingest.kafka.RebalanceListener`); the loop
seeks after the poll, and drops what that poll fetched for the partitions it seeked.

kafka-python is imported inside functions so that ``--help`` stays instant.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from antenna_elt.clock import Clock
from antenna_elt.ingest.consumer import Client, Consumer, Polled, batch_tuples

log = logging.getLogger("antenna_elt.ingest")

# kafka-python settings of every ingestor (and of the benchmark's consume-only ceiling)
CONSUMER_SETTINGS: dict[str, Any] = {
    "enable_auto_commit": False,
    "auto_offset_reset": "earliest",
    # events of aborted transactions are never ingested; the consumer's position moves
    # past transaction markers and aborted records, and end offsets are the last stable
    # offset (a transaction still open holds the bounded run's target back, not past it)
    "isolation_level": "read_committed",
    "max_poll_records": 5000,
    # 4 MiB in flight, 1 MiB a partition: the fetch buffers and the records decoded from
    # them are most of the consumer process's memory; 16/4 MiB cost ~45 MiB more peak at
    # the same rate (bench: BENCH_PARTS=clients, see the README)
    "fetch_max_bytes": 4 * 1024 * 1024,
    "max_partition_fetch_bytes": 1024 * 1024,
    "fetch_min_bytes": 1,
    "fetch_max_wait_ms": 200,
    "check_crcs": False,
    # a killed ingestor's partitions move to its successor after this long
    "session_timeout_ms": 10_000,
    "heartbeat_interval_ms": 3_000,
}
MAX_POLL_RECORDS = int(CONSUMER_SETTINGS["max_poll_records"])


def consumer_config(bootstrap_servers: str, group_id: str) -> dict[str, Any]:
    return {
        "bootstrap_servers": bootstrap_servers.split(","),
        "group_id": group_id,
        "client_id": f"antenna-elt-{group_id}",
        **CONSUMER_SETTINGS,
    }


def kafka_consumer(**config: Any) -> Any:
    from kafka import KafkaConsumer

    return KafkaConsumer(**config)


def _listener_for(listener: Any) -> Any:
    """kafka-python 3 wants a ConsumerRebalanceListener subclass: forward to ours."""
    from kafka import ConsumerRebalanceListener

    class Forward(ConsumerRebalanceListener):
        def on_partitions_assigned(self, assigned: Any) -> None:
            listener.on_partitions_assigned(assigned)

        def on_partitions_revoked(self, revoked: Any) -> None:
            listener.on_partitions_revoked(revoked)

    return Forward()


class KafkaPythonConsumer:
    """:class:`~antenna_elt.ingest.consumer.Consumer` over a ``kafka.KafkaConsumer`` (or
    anything with its methods: the unit tests' scripted consumer)."""

    def __init__(self, consumer: Any):
        self.raw = consumer

    def subscribe(self, topic: str, listener: Any) -> None:
        self.raw.subscribe([topic], listener=_listener_for(listener))

    def poll(self, timeout_ms: int, max_records: int) -> dict[Any, Polled]:
        records = self.raw.poll(timeout_ms=timeout_ms, max_records=max_records)
        return {tp: batch_tuples(tp.partition, recs) for tp, recs in records.items()}

    def assignment(self) -> set[Any]:
        return set(self.raw.assignment())

    def seek(self, tp: Any, offset: int) -> None:
        self.raw.seek(tp, offset)

    def seek_to_beginning(self, tp: Any) -> None:
        self.raw.seek_to_beginning(tp)

    def position(self, tp: Any) -> int | None:
        try:
            offset = self.raw.position(tp, timeout_ms=0)
        except Exception:  # not assigned any more (a rebalance), or not resolved yet
            return None
        return None if offset is None else int(offset)

    def caught_up(self) -> bool:
        assigned = self.raw.assignment()
        if not assigned:
            return False
        for tp in assigned:
            try:
                high = self.raw.highwater(tp)
            except Exception:
                return False
            at = self.position(tp)
            if high is None or at is None or at < high:
                return False
        return True

    def end_offsets(self, tps: list[Any], timeout_ms: int) -> dict[Any, int]:
        return dict(self.raw.end_offsets(tps, timeout_ms=timeout_ms))

    def partitions_for_topic(self, topic: str) -> set[int] | None:
        parts = self.raw.partitions_for_topic(topic)
        return set(parts) if parts else None

    def topic_partition(self, topic: str, partition: int) -> Any:
        from kafka import TopicPartition

        return TopicPartition(topic, partition)

    def commit_offsets(self, topic: str, offsets: dict[int, int]) -> None:
        from kafka import TopicPartition
        from kafka.structs import OffsetAndMetadata

        owned = {tp.partition for tp in self.raw.assignment()}
        metas = {
            TopicPartition(topic, p): OffsetAndMetadata(o, "", -1)
            for p, o in offsets.items()
            if p in owned
        }
        if metas:
            self.raw.commit_async(offsets=metas, callback=lambda *_: None)

    def keep_alive(self, seconds: float, clock: Clock, stop: threading.Event) -> None:
        """Paused polls keep a kafka-python consumer in its group; the rebalance callbacks
        of these polls are acted on after the retry."""
        deadline = clock.monotonic() + seconds
        assigned = list(self.raw.assignment())
        self.raw.pause(*assigned)
        try:
            while clock.monotonic() < deadline and not stop.is_set():
                self.raw.poll(timeout_ms=200)
        finally:
            self.raw.resume(*[tp for tp in assigned if tp in self.raw.assignment()])

    def set_rebalance_hook(self, hook: Callable[[], object] | None) -> None:
        """kafka-python runs the callbacks where acting on them is unsafe: the loop acts
        after the poll instead."""

    def close(self) -> None:
        self.raw.close(autocommit=False)


def _unreachable(exc: BaseException) -> bool:
    from kafka.errors import KafkaTimeoutError

    # kafka-python 3: 'Unable to bootstrap from ...'
    return isinstance(exc, KafkaTimeoutError)


def _open(factory: Callable[..., Any], bootstrap_servers: str, group_id: str) -> Consumer:
    return KafkaPythonConsumer(factory(**consumer_config(bootstrap_servers, group_id)))


CLIENT = Client(
    name="kafka-python",
    open=_open,
    default_factory=kafka_consumer,
    unreachable=_unreachable,
    writer_in_process=True,  # it decodes in Python: the consumer takes a core
)
