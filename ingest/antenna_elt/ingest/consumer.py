"""The consumer as the loop sees it, whichever Kafka client library is underneath.

Two clients implement it: kafka-python (:mod:`.kafka_python`, pure Python, the default)
and confluent-kafka (:mod:`.librdkafka`, librdkafka in C). The loop only calls the
methods of :class:`Consumer`, so both clients share one exactly-once protocol (offsets
stored in the sink, seek on assignment), rebalance handling, flush policy and lag report.

A poll returns, per partition, the records already shaped as the batch holds them:
``(partition, offset, value, record timestamp in ms)`` tuples in offset order, and the
sum of their value sizes. The client adapters build those tuples while unpacking their
own record objects, so nothing else touches every message in the consumer process.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, NamedTuple, Protocol

from antenna_elt.clock import Clock
from antenna_elt.settings import KAFKA_CLIENTS

KAFKA_PYTHON, LIBRDKAFKA = KAFKA_CLIENTS
CLIENTS = KAFKA_CLIENTS

Message = tuple[int, int, bytes | None, int | None]
"""(partition, offset, value, record timestamp in ms or -1/None): what a batch holds."""


class Polled(NamedTuple):
    """The records of one partition in one poll."""

    messages: list[Message]
    """In offset order."""
    value_bytes: int
    """Sum of the message values' sizes."""


class RebalanceListener:
    """Records what a rebalance changed; the loop acts on it (:meth:`take`) after the
    poll, or right away in the client's callback where the client needs that
    (:meth:`Consumer.set_rebalance_hook`). kafka-python runs the callbacks on its own
    terms, so they only record."""

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


class Consumer(Protocol):
    """What the loop asks of a consumer (``tp``: the client's topic-partition, hashable,
    with a ``partition`` attribute)."""

    def subscribe(self, topic: str, listener: RebalanceListener) -> None: ...

    def poll(self, timeout_ms: int, max_records: int) -> dict[Any, Polled]:
        """Records fetched since the last poll, at most ``max_records``, waiting up to
        ``timeout_ms`` when there are none. Runs the rebalance callbacks."""
        ...

    def assignment(self) -> set[Any]: ...

    def seek(self, tp: Any, offset: int) -> None: ...

    def seek_to_beginning(self, tp: Any) -> None: ...

    def position(self, tp: Any) -> int | None:
        """The next offset the consumer fetches (past transaction markers and aborted
        records, which poll never returns), or None when unknown."""
        ...

    def caught_up(self) -> bool:
        """Every assigned partition has returned everything up to the end the last fetch
        reported (no network call): nothing more is waiting right now."""
        ...

    def end_offsets(self, tps: list[Any], timeout_ms: int) -> dict[Any, int]:
        """The end offset (the last stable offset: read committed) of each partition."""
        ...

    def partitions_for_topic(self, topic: str) -> set[int] | None: ...

    def topic_partition(self, topic: str, partition: int) -> Any: ...

    def commit_offsets(self, topic: str, offsets: dict[int, int]) -> None:
        """Commit these next offsets to Kafka in the background (monitoring only)."""
        ...

    def keep_alive(self, seconds: float, clock: Clock, stop: threading.Event) -> None:
        """Wait ``seconds`` (or until ``stop``) without fetching and without losing the
        group membership (the sink is down; the current batch is being retried)."""
        ...

    def set_rebalance_hook(self, hook: Callable[[], object] | None) -> None:
        """``hook()`` runs right after the listener recorded a rebalance, where the client
        allows acting on it in the callback (librdkafka: the start offsets of an assigned
        partition must be set before it fetches). None: only the listener records."""
        ...

    def close(self) -> None: ...


@dataclass(frozen=True)
class Client:
    """A Kafka client library: how to open a consumer with the ingestors' settings, and
    which error says that Kafka is unreachable."""

    name: str
    open: Callable[..., Consumer]
    """``open(factory, bootstrap_servers, group_id)``: a consumer (not subscribed yet);
    ``factory(**config)`` builds the client's own consumer object (tests pass fakes)."""
    default_factory: Callable[..., Any]
    unreachable: Callable[[BaseException], bool]
    """Whether an error of ``open`` means Kafka did not answer (retried with backoff)."""
    writer_in_process: bool = False
    """Whether the sink writes in a process of its own, beside the loop (its Python work
    per message takes a core), rather than in the loop itself (:mod:`.writer`)."""


def batch_tuples(partition: int, records: Iterable[Any]) -> Polled:
    """kafka-python-shaped records (``offset``, ``value``, ``timestamp`` attributes) as
    the batch's tuples (shared by the kafka-python adapter and the unit tests' fakes)."""
    messages = [(partition, r.offset, r.value, r.timestamp) for r in records]
    size = 0
    for m in messages:
        value = m[2]
        if value is not None:
            size += len(value)
    return Polled(messages, size)
