"""Everything the loop asks of Kafka: the consumer settings, connecting, the rebalance
listener, end offsets, lag, and mirroring the sink's offsets for monitoring tools.

kafka-python is imported inside functions so that ``--help`` stays instant.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable
from typing import Any

from antenna_elt.clock import Clock
from antenna_elt.errors import UserError
from antenna_elt.ingest.retry import retry

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
    # 16 MB in flight, 4 MB a partition: larger buffers raise peak memory (decoded records)
    # without raising the rate (bench: 1M vs 5M events)
    "fetch_max_bytes": 16 * 1024 * 1024,
    "max_partition_fetch_bytes": 4 * 1024 * 1024,
    "fetch_min_bytes": 1,
    "fetch_max_wait_ms": 200,
    "check_crcs": False,
    # a killed ingestor's partitions move to its successor after this long
    "session_timeout_ms": 10_000,
    "heartbeat_interval_ms": 3_000,
}
TOPIC_WAIT_SECONDS = 60.0


class RebalanceListener:
    """Rebalance callbacks run on kafka-python's IO thread: only record what changed; the
    loop acts on it (:meth:`take`) between polls."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.to_seek: set[Any] = set()
        self.revoked: set[Any] = set()

    def on_partitions_assigned(self, assigned: Iterable[Any]) -> None:
        with self.lock:
            self.to_seek.update(assigned)

    def on_partitions_revoked(self, revoked: Iterable[Any]) -> None:
        with self.lock:
            self.revoked.update(revoked)
            self.to_seek.difference_update(revoked)

    def take(self) -> tuple[set[Any], set[Any]]:
        """(partitions to seek, partitions revoked) since the last call."""
        with self.lock:
            to_seek, revoked = self.to_seek, self.revoked
            self.to_seek, self.revoked = set(), set()
        return to_seek, revoked


def new_listener() -> RebalanceListener:
    """A listener kafka-python accepts (3.x wants a ConsumerRebalanceListener subclass)."""
    from kafka import ConsumerRebalanceListener

    class Listener(RebalanceListener, ConsumerRebalanceListener):
        pass

    return Listener()


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


class _Unreachable(Exception):
    """Kafka did not answer the consumer's bootstrap."""


def connect(
    factory: Callable[..., Any],
    bootstrap_servers: str,
    group_id: str,
    topic: str,
    listener: RebalanceListener,
    *,
    give_up: Callable[[], bool],
    wait: Callable[[float], object],
) -> Any:
    """A consumer of ``topic`` in ``group_id``, retrying with backoff while Kafka is
    unreachable unless ``give_up()`` says otherwise (then a one-line error)."""
    from kafka.errors import KafkaTimeoutError

    def unreachable(_exc: BaseException, seconds: float) -> None:
        if give_up():
            raise UserError(
                f"Kafka at {bootstrap_servers} is unreachable; "
                "start it with `make up` or set KAFKA_BOOTSTRAP_SERVERS"
            ) from None
        log.warning(
            "Kafka at %s unreachable; retrying in %.0f s (start it with `make up` "
            "or set KAFKA_BOOTSTRAP_SERVERS)",
            bootstrap_servers,
            seconds,
        )

    def attempt() -> Any:
        try:
            return factory(**consumer_config(bootstrap_servers, group_id))
        except KafkaTimeoutError as exc:  # kafka-python 3: 'Unable to bootstrap from ...'
            raise _Unreachable(str(exc)) from exc

    consumer = retry(attempt, retry_on=_Unreachable, on_failure=unreachable, wait=wait)
    consumer.subscribe([topic], listener=listener)
    return consumer


def topic_end_offsets(
    consumer: Any, topic: str, bootstrap_servers: str, clock: Clock
) -> dict[int, int]:
    """End offset of every partition of ``topic``; waits up to a minute for the topic."""
    from kafka import TopicPartition

    deadline = clock.monotonic() + TOPIC_WAIT_SECONDS
    while True:
        parts = consumer.partitions_for_topic(topic)
        if parts:
            tps = [TopicPartition(topic, p) for p in sorted(parts)]
            ends = consumer.end_offsets(tps)
            return {tp.partition: off for tp, off in ends.items()}
        if clock.monotonic() > deadline:
            raise UserError(
                f"topic {topic!r} not found at {bootstrap_servers}; "
                "create it (`make up` creates `devices`) or pass --topic"
            )
        clock.wait(0.5)


def position(consumer: Any, tp: Any) -> int | None:
    """The consumer's position in ``tp`` (the next offset it fetches: past transaction
    markers and aborted records, which poll never returns), or None when unknown."""
    try:
        offset = consumer.position(tp, timeout_ms=0)
    except Exception:  # not assigned any more (a rebalance), or not resolved yet
        return None
    return None if offset is None else int(offset)


def mirror_offsets(consumer: Any, topic: str, next_offsets: dict[int, int]) -> None:
    """Commit the sink's offsets to Kafka for lag tools; failures are harmless."""
    from kafka import TopicPartition
    from kafka.structs import OffsetAndMetadata

    owned = {tp.partition for tp in consumer.assignment()}
    offsets = {
        TopicPartition(topic, p): OffsetAndMetadata(o, "", -1)
        for p, o in next_offsets.items()
        if p in owned
    }
    if offsets:
        try:
            consumer.commit_async(offsets=offsets, callback=lambda *_: None)
        except Exception as exc:
            log.debug("informational Kafka offset commit failed: %s", exc)


class LagReport:
    """The consumer lag per assigned partition, as text for the progress line; says once
    when Kafka stops answering and once when it is back."""

    def __init__(self, bootstrap_servers: str):
        self.bootstrap_servers = bootstrap_servers
        self.kafka_down = False

    def text(self, consumer: Any, position: Callable[[int], int]) -> str:
        assigned = list(consumer.assignment())
        if not assigned:
            return "unknown (no partitions assigned yet)"
        try:
            ends = consumer.end_offsets(assigned, timeout_ms=5000)
        except Exception as exc:
            if not self.kafka_down:
                self.kafka_down = True
                log.warning(
                    "Kafka at %s is unreachable (%s); the consumer keeps retrying and resumes "
                    "where it stopped",
                    self.bootstrap_servers,
                    type(exc).__name__,
                )
            return "unknown (Kafka unreachable)"
        if self.kafka_down:
            self.kafka_down = False
            log.info("Kafka at %s is back", self.bootstrap_servers)
        total = 0
        parts = []
        for tp in sorted(assigned, key=lambda t: t.partition):
            lag = max(0, ends.get(tp, 0) - position(tp.partition))
            total += lag
            parts.append(f"p{tp.partition}={lag}")
        return f"{total} messages ({', '.join(parts)})"
