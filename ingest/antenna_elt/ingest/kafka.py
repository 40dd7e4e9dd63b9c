"""Everything the loop asks of Kafka beyond a poll, whichever client is underneath
(:mod:`.consumer`): connecting with retries, the end offsets of a bounded run, mirroring
the sink's offsets for monitoring tools, and the lag report."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from antenna_elt.clock import Clock
from antenna_elt.errors import UserError
from antenna_elt.ingest.consumer import Client, Consumer, RebalanceListener
from antenna_elt.ingest.retry import retry

__all__ = [
    "TOPIC_WAIT_SECONDS",
    "LagReport",
    "RebalanceListener",
    "connect",
    "mirror_offsets",
    "new_listener",
    "position",
    "topic_end_offsets",
]

log = logging.getLogger("antenna_elt.ingest")

TOPIC_WAIT_SECONDS = 60.0


def new_listener() -> RebalanceListener:
    return RebalanceListener()


class _Unreachable(Exception):
    """Kafka did not answer the consumer's bootstrap."""


def connect(
    client: Client,
    factory: Callable[..., Any],
    bootstrap_servers: str,
    group_id: str,
    topic: str,
    listener: RebalanceListener,
    *,
    give_up: Callable[[], bool],
    wait: Callable[[float], object],
) -> Consumer:
    """A consumer of ``topic`` in ``group_id``, retrying with backoff while Kafka is
    unreachable unless ``give_up()`` says otherwise (then a one-line error)."""

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

    def attempt() -> Consumer:
        try:
            return client.open(factory, bootstrap_servers, group_id)
        except Exception as exc:
            if client.unreachable(exc):
                raise _Unreachable(str(exc)) from exc
            raise

    consumer = retry(attempt, retry_on=_Unreachable, on_failure=unreachable, wait=wait)
    consumer.subscribe(topic, listener)
    return consumer


def topic_end_offsets(
    consumer: Consumer, topic: str, bootstrap_servers: str, clock: Clock
) -> dict[int, int]:
    """End offset of every partition of ``topic``; waits up to a minute for the topic."""
    deadline = clock.monotonic() + TOPIC_WAIT_SECONDS
    while True:
        parts = consumer.partitions_for_topic(topic)
        if parts:
            tps = [consumer.topic_partition(topic, p) for p in sorted(parts)]
            ends = consumer.end_offsets(tps, timeout_ms=30_000)
            return {tp.partition: off for tp, off in ends.items()}
        if clock.monotonic() > deadline:
            raise UserError(
                f"topic {topic!r} not found at {bootstrap_servers}; "
                "create it (`make up` creates `devices`) or pass --topic"
            )
        clock.wait(0.5)


def position(consumer: Consumer, tp: Any) -> int | None:
    """The consumer's position in ``tp`` (the next offset it fetches: past transaction
    markers and aborted records, which poll never returns), or None when unknown."""
    return consumer.position(tp)


def mirror_offsets(consumer: Consumer, topic: str, next_offsets: dict[int, int]) -> None:
    """Commit the sink's offsets to Kafka for lag tools; failures are harmless."""
    try:
        consumer.commit_offsets(topic, next_offsets)
    except Exception as exc:
        log.debug("informational Kafka offset commit failed: %s", exc)


class LagReport:
    """The consumer lag per assigned partition, as text for the progress line; says once
    when Kafka stops answering and once when it is back."""

    def __init__(self, bootstrap_servers: str):
        self.bootstrap_servers = bootstrap_servers
        self.kafka_down = False

    def text(self, consumer: Consumer, position: Callable[[int], int]) -> str:
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
