"""The consume, validate, batch, write loop that every ingestor shares.

A sink stores the rows *and* the next offset of every partition in one atomic step
(PostgreSQL: one transaction; lake: files plus a commit marker). The loop never trusts
Kafka's committed offsets for correctness: on start and on every assignment it asks the
sink where each partition stands and seeks there, so a crash at any point loses and
duplicates nothing (Kafka's recipe for exactly-once into an external store). Offsets are
also committed to Kafka after each write, only so that standard tools show the group's lag.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

from antenna_elt.clock import SYSTEM_CLOCK, Clock
from antenna_elt.errors import UserError
from antenna_elt.ingest import kafka
from antenna_elt.ingest.batch import Batch
from antenna_elt.ingest.clients import client
from antenna_elt.ingest.consumer import LIBRDKAFKA, Polled
from antenna_elt.ingest.flush import FlushPolicy
from antenna_elt.ingest.positions import Positions
from antenna_elt.ingest.progress import Progress, Stats
from antenna_elt.ingest.retry import retry
from antenna_elt.ingest.sink import Sink, SinkUnavailable, StaleBatch
from antenna_elt.ingest.stopping import StopOnSignal
from antenna_elt.ingest.writer import (
    ProcessWriter,
    WriterDied,
    WriterFactory,
    writing_in_the_loop,
)
from antenna_elt.settings import DEFAULT_FUTURE_SKEW

log = logging.getLogger("antenna_elt.ingest")

MAX_POLL_RECORDS = 5000
"""Records a poll returns at most (both clients)."""
WRITER_WAIT_POLL_MS = 5
"""Poll timeout while a caught-up batch waits for the writer to finish the previous one."""


@dataclass
class LoopOptions:
    topic: str
    group_id: str
    bootstrap_servers: str
    batch_size: int = 20_000
    """Flush when a batch holds this many messages."""
    max_latency: float = 1.0
    """Flush when the oldest message of a batch is this many seconds old."""
    max_batch_bytes: int | None = None
    """Flush when the message values of a batch add up to this many bytes."""
    until_caught_up: bool = False
    """Stop once every partition has reached the end offset it had at start."""
    max_messages: int | None = None
    """Stop after this many messages (events plus rejects)."""
    log_interval: float = 10.0
    """Seconds between progress lines (rate, lag)."""
    idle_timeout: float | None = None
    """With until_caught_up: give up after this many seconds without reaching the end."""
    future_skew: int = DEFAULT_FUTURE_SKEW
    """Seconds an event time may be ahead of its Kafka record's time (contract.future_bound)."""
    client: str = LIBRDKAFKA
    """The Kafka client library (consumer.CLIENTS)."""
    flush_when_caught_up: bool = False
    """Also flush as soon as the consumer has read everything the topic held at its last
    fetch and the writer is idle: a quiet stream is written within milliseconds, a
    backlog still goes in batches of ``batch_size`` (one is written while the next is
    read, so while the writer is busy the batch keeps growing)."""


class _Abandon(Exception):
    """Stop requested while the sink is unavailable: the batch is read again next start."""


class IngestLoop(StopOnSignal):
    """Consume ``options.topic`` and land every message in ``sink`` exactly once."""

    _stop_log = log
    _stop_doing = "flushing the current batch"

    def __init__(
        self,
        sink_factory: Callable[[], Sink],
        options: LoopOptions,
        consumer_factory: Callable[..., Any] | None = None,
        *,
        writer_factory: WriterFactory | None = None,
        clock: Clock = SYSTEM_CLOCK,
        listener: kafka.RebalanceListener | None = None,
    ):
        """``sink_factory`` builds the writer's sink (the production writer process builds
        its own with it: then it must be picklable, a class or functools.partial of one).
        The writer is the client's (:attr:`~.consumer.Client.writer_in_process`) unless
        ``writer_factory`` is given."""
        self.sink = sink_factory()
        self.options = options
        self.clock = clock
        self.stats = Stats(started=clock.monotonic())
        self.flush = FlushPolicy(
            options.batch_size, options.max_latency, options.max_batch_bytes, clock
        )
        self._stop = threading.Event()
        self._client = client(options.client)
        self._consumer_factory = consumer_factory or self._client.default_factory
        self._consumer: Any = None
        self._listener = listener or kafka.new_listener()
        self._positions = Positions()
        self._end_targets: dict[int, int] | None = None
        self._progress = Progress(
            self.stats, clock, options.log_interval, options.bootstrap_servers
        )
        self._batch = Batch(options.topic)
        self._inflight: tuple[Batch, Future[tuple[int, int]]] | None = None
        if writer_factory is None:
            writer_factory = (
                ProcessWriter if self._client.writer_in_process else writing_in_the_loop
            )
        self._writer = writer_factory(sink_factory)
        self._abandoned = False

    # -- lifecycle -----------------------------------------------------------------

    def _connect(self) -> Any:
        opts = self.options
        bounded = opts.until_caught_up or opts.max_messages is not None
        consumer = kafka.connect(
            self._client,
            self._consumer_factory,
            opts.bootstrap_servers,
            opts.group_id,
            opts.topic,
            self._listener,
            give_up=lambda: bounded or self._stop.is_set(),
            wait=lambda s: self.clock.wait(s, self._stop),
        )
        # librdkafka sets a partition's start offset in the assignment callback itself
        consumer.set_rebalance_hook(self._handle_rebalance)
        return consumer

    def run(self) -> Stats:
        """Run until stopped (signal, --max-messages or --until-caught-up)."""
        opts = self.options
        self.sink.setup()
        self._consumer = self._connect()
        log.info(
            "consuming %s from %s as group %s with %s into %s, written by %s "
            "(batch %d messages or %.1f s%s)",
            opts.topic,
            opts.bootstrap_servers,
            opts.group_id,
            self._client.name,
            self.sink.description,
            self._writer.where,
            opts.batch_size,
            opts.max_latency,
            ", or as soon as caught up" if opts.flush_when_caught_up else "",
        )
        if opts.until_caught_up:
            self._end_targets = kafka.topic_end_offsets(
                self._consumer, opts.topic, opts.bootstrap_servers, self.clock
            )
            log.info(
                "bounded run: stopping at end offsets %s (%d messages in the topic)",
                self._end_targets,
                sum(self._end_targets.values()),
            )
        last_progress = self.clock.monotonic()
        try:
            while not self._stop.is_set():
                remaining = self._remaining_budget()
                if remaining == 0:
                    break
                room = min(MAX_POLL_RECORDS, self.flush.room(self._batch))
                records = self._consumer.poll(
                    timeout_ms=self._poll_timeout_ms(),
                    max_records=min(remaining, room) if remaining is not None else room,
                )
                seeked = self._handle_rebalance()
                if self._add_records(records, seeked):
                    last_progress = self.clock.monotonic()
                if self._should_flush():
                    self._submit()
                self._progress.maybe_log(self._consumer, self._positions.next_offset)
                if self._caught_up():
                    log.info("caught up with the end offsets seen at start")
                    break
                idle = opts.idle_timeout
                if idle is not None and self.clock.monotonic() - last_progress > idle:
                    raise UserError(
                        f"no progress for {idle:.0f} s while catching up with "
                        f"{opts.topic}; is Kafka at {opts.bootstrap_servers} up?"
                    )
            if len(self._batch):
                self._submit()
            self._settle()
        finally:
            self._close()
        self._progress.summary()
        return self.stats

    # -- reading -----------------------------------------------------------------------

    def _remaining_budget(self) -> int | None:
        if self.options.max_messages is None:
            return None
        inflight = len(self._inflight[0]) if self._inflight else 0
        done = self.stats.messages + len(self._batch) + inflight
        return max(0, self.options.max_messages - done)

    def _handle_rebalance(self) -> set[int]:
        """Act on the rebalance callbacks of the last poll; returns the partitions seeked
        (the records that poll returned for them must not be kept)."""
        to_seek, revoked = self._listener.take()
        if not to_seek and not revoked:
            return set()
        # the stored offsets must include the batch being written before we read them
        self._settle()
        for tp in revoked:
            self._positions.forget(tp.partition)
            self._batch.drop_partition(tp.partition)
        if not to_seek:
            return set()
        stored = self._stored_offsets([tp.partition for tp in to_seek])
        for tp in sorted(to_seek, key=lambda t: t.partition):
            self._batch.drop_partition(tp.partition)
            self._positions.seek(self._consumer, tp, stored.get(tp.partition))
        log.info(
            "assigned partitions %s; resuming at stored offsets %s",
            sorted(tp.partition for tp in to_seek),
            {p: stored.get(p, "beginning") for p in sorted(tp.partition for tp in to_seek)},
        )
        return {tp.partition for tp in to_seek}

    def _reseek(self, partitions: Iterable[int]) -> None:
        owned = {tp.partition: tp for tp in self._consumer.assignment()}
        wanted = [p for p in partitions if p in owned]
        stored = self._stored_offsets(wanted)
        for p in wanted:
            self._positions.seek(self._consumer, owned[p], stored.get(p))

    def _stored_offsets(self, partitions: list[int]) -> dict[int, int]:
        def unavailable(exc: BaseException, wait: float) -> None:
            if self._stop.is_set():
                raise UserError(f"stopped while {self.sink.description} was unavailable") from None
            log.warning(
                "%s unavailable while reading stored offsets (%s); retrying in %.0f s",
                self.sink.description,
                exc,
                wait,
            )

        return retry(
            lambda: self.sink.stored_offsets(self.options.topic, partitions),
            retry_on=SinkUnavailable,
            on_failure=unavailable,
            wait=lambda s: self.clock.wait(s, self._stop),
        )

    def _poll_timeout_ms(self) -> int:
        timeout = self.flush.poll_timeout_ms(self._batch)
        if self.options.flush_when_caught_up and len(self._batch) and not self._writer_idle():
            # a batch ready to go waits for the writer: look again soon
            return min(timeout, WRITER_WAIT_POLL_MS)
        return timeout

    def _writer_idle(self) -> bool:
        return self._inflight is None or self._inflight[1].done()

    def _add_records(self, records: dict[Any, Polled], seeked: set[int]) -> int:
        added = self._positions.add(self._batch, records, seeked)
        if added and not self._batch.started:
            self._batch.started = self.clock.monotonic()
        return added

    def _should_flush(self) -> bool:
        if not len(self._batch):
            return False
        if self.flush.due(self._batch) or self._remaining_budget() == 0:
            return True
        if self.options.flush_when_caught_up and self._writer_idle() and self._consumer.caught_up():
            return True
        return self._end_targets is not None and self._reached_targets()

    # -- writing -----------------------------------------------------------------------

    def _submit(self) -> None:
        """Hand the current batch to the writer and start a new one.

        One batch is written while the next is consumed and validated (the database's
        work overlaps ours); writes stay strictly in order because the previous one is
        settled first. The batch is prepared for the writer (pickled) before that wait,
        so that the hand-over after it is short.
        """
        batch = self._batch
        # the contract's future bound: every message of the batch has been read by now
        batch.clock_time = self.clock.time()
        batch.future_skew = self.options.future_skew
        prepared = self._writer.prepare(batch)
        self._settle()
        if self._abandoned or self._batch is not batch:
            return  # the write before was stale: what was read after it is read again
        self._batch = Batch(self.options.topic)
        self._inflight = (batch, self._writer.submit(batch, prepared))

    def _settle(self) -> None:
        """Wait for the batch being written; retry it while the sink is down; on a stale
        batch, drop what was read after it and re-read from the stored offsets."""
        if self._inflight is None:
            return
        batch, future = self._inflight
        self._inflight = None
        written: tuple[int, int] | None
        try:
            written = future.result()
        except WriterDied as exc:
            log.error("the writer process died (%s); starting a new one", exc)
            self._writer.restart()
            written = self._write_again(batch, SinkUnavailable("writer process restarted"))
        except SinkUnavailable as exc:
            written = self._write_again(batch, exc)
        except StaleBatch as exc:
            self._recover_stale(batch, exc)
            written = None
        if written is not None:
            self._account(batch, written)

    def _write_again(self, batch: Batch, error: SinkUnavailable) -> tuple[int, int] | None:
        """Retry a failed write with backoff, keeping the consumer in its group."""

        def unavailable(exc: BaseException, wait: float) -> None:
            if self._stop.is_set():
                log.warning(
                    "stopping with %d unwritten messages (%s); they are read again on the next start",
                    len(batch) + len(self._batch),
                    exc,
                )
                raise _Abandon
            log.warning("%s unavailable (%s); retrying in %.0f s", self.sink.description, exc, wait)

        try:
            written = retry(
                lambda: self.sink.write(batch),
                retry_on=SinkUnavailable,
                on_failure=unavailable,
                wait=self._keep_group_alive,
                failed=error,
            )
        except _Abandon:
            self._abandoned = True
            self._batch = Batch(self.options.topic)
            return None
        except StaleBatch as exc:
            # the lost connection had committed after all: the sink holds this batch
            self._recover_stale(batch, exc)
            return None
        log.info("%s is back; batch of %d messages written", self.sink.description, len(batch))
        return written

    def _recover_stale(self, batch: Batch, exc: StaleBatch) -> None:
        """Drop what was read after a stale batch and re-read from the stored offsets."""
        self.stats.stale_batches += 1
        log.warning("%s; re-reading from the stored offsets", exc)
        partitions = batch.partitions | self._batch.partitions
        self._batch = Batch(self.options.topic)
        self._reseek(partitions)

    def _account(self, batch: Batch, written: tuple[int, int]) -> None:
        self.stats.events += written[0]
        self.stats.rejects += written[1]
        self.stats.batches += 1
        kafka.mirror_offsets(self._consumer, self.options.topic, batch.next_offsets)

    def _keep_group_alive(self, seconds: float) -> None:
        """Wait without breaking the group (kafka-python: paused polls)."""
        self._consumer.keep_alive(seconds, self.clock, self._stop)

    # -- bounds, progress, end -----------------------------------------------------------

    def _reached_targets(self) -> bool:
        """Every owned partition has been read up to its end offset seen at start."""
        if self._end_targets is None:
            return False
        owned = {tp.partition: tp for tp in self._consumer.assignment()}
        return self._positions.reached(
            owned, self._end_targets, lambda tp: kafka.position(self._consumer, tp)
        )

    def _caught_up(self) -> bool:
        if self._end_targets is None or len(self._batch) or not self._reached_targets():
            return False
        self._settle()
        # a stale or abandoned write re-seeks: then we are not done yet
        return self._reached_targets() and not len(self._batch)

    def _close(self) -> None:
        self._writer.shutdown()
        try:
            if self._consumer is not None:
                self._consumer.close()
        finally:
            self.sink.close()
