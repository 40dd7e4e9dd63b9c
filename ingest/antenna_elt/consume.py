"""The consume, validate, batch, write loop that every ingestor shares.

A sink stores the rows *and* the next offset of every partition in one atomic step
(PostgreSQL: one transaction; lake: files plus a commit marker). The loop never trusts
Kafka's committed offsets for correctness: on start and on every assignment it asks the
sink where each partition stands and seeks there, so a crash at any point loses and
duplicates nothing (Kafka's recipe for exactly-once into an external store). Offsets are
also committed to Kafka after each write, only so that standard tools show the group's lag.
"""

from __future__ import annotations

import ctypes
import logging
import multiprocessing
import signal
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from types import FrameType
from typing import Any, Protocol

from antenna_elt.contract import parse
from antenna_elt.errors import UserError

log = logging.getLogger("antenna_elt.ingest")

# (timestamp, id, antenna_id, bytes, app, partition, offset)
Row = tuple[int, str, str, int, str, int, int]
# (partition, offset, raw value, reason)
RejectRow = tuple[int, int, bytes | None, str]


@dataclass
class Batch:
    """Raw messages of one topic, in offset order per partition, with the offset range
    of every partition. The sink validates them (:meth:`split`) where it writes them, so
    that validation runs in the writer, beside the consumer rather than after it."""

    topic: str
    messages: list[tuple[int, int, bytes | None]] = field(default_factory=list)
    """(partition, offset, value)"""
    first_offsets: dict[int, int] = field(default_factory=dict)
    next_offsets: dict[int, int] = field(default_factory=dict)
    started: float = 0.0
    value_bytes: int = 0
    """Sum of the message values' sizes (for size-based flushing)."""

    def __len__(self) -> int:
        return len(self.messages)

    def split(self) -> tuple[list[Row], list[RejectRow]]:
        """Validate every message: events as rows, contract breakers as rejects."""
        rows: list[Row] = []
        rejects: list[RejectRow] = []
        rows_append = rows.append
        rejects_append = rejects.append
        for partition, offset, value in self.messages:
            result = parse(value)
            if type(result) is tuple:
                rows_append((*result, partition, offset))
            else:
                rejects_append((partition, offset, value, result))  # type: ignore[arg-type]
        return rows, rejects


class StaleBatch(Exception):
    """The sink already holds some of these offsets (another consumer, or a write whose
    commit was acknowledged too late to see). Nothing was written; re-seek and go on."""


class SinkUnavailable(Exception):
    """The sink cannot be reached right now; the same batch is retried after a backoff."""


class Sink(Protocol):
    """Where a batch lands. ``write`` is atomic: rows, rejects and next offsets together;
    it returns how many events and rejects it wrote."""

    description: str

    def setup(self) -> None: ...

    def stored_offsets(self, topic: str, partitions: Iterable[int]) -> dict[int, int]:
        """Next offset to read per partition; partitions never written are absent."""
        ...

    def write(self, batch: Batch) -> tuple[int, int]: ...

    def close(self) -> None: ...


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


@dataclass
class Stats:
    events: int = 0
    rejects: int = 0
    batches: int = 0
    stale_batches: int = 0
    started: float = field(default_factory=time.monotonic)

    @property
    def messages(self) -> int:
        return self.events + self.rejects


# kafka-python settings of every ingestor (and of the benchmark's consume-only ceiling)
CONSUMER_SETTINGS: dict[str, Any] = {
    "enable_auto_commit": False,
    "auto_offset_reset": "earliest",
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


def _make_listener() -> Any:
    from kafka import ConsumerRebalanceListener

    class _Listener(ConsumerRebalanceListener):
        """Rebalance callbacks run on kafka-python's IO thread: only record what changed."""

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
            with self.lock:
                to_seek, revoked = self.to_seek, self.revoked
                self.to_seek, self.revoked = set(), set()
            return to_seek, revoked

    return _Listener()


# -- the writer process ----------------------------------------------------------------
# kafka-python decodes records in Python, so consuming takes a whole core. Validation and
# the sink's writes run in one separate process, on a batch while the next is consumed.

_WRITER_SINK: Sink | None = None


def _log_config() -> tuple[int, str | None, str | None]:
    """The parent's logging set-up, for the writer process (spawned processes start bare)."""
    root = logging.getLogger()
    for handler in root.handlers:
        if handler.formatter is not None:
            return root.level, handler.formatter._fmt, handler.formatter.datefmt
    return root.level, None, None


def _writer_init(
    sink_factory: Callable[[], Sink],
    log_config: tuple[int, str | None, str | None] = (30, None, None),
) -> None:
    global _WRITER_SINK
    level, fmt, datefmt = log_config
    if fmt is not None:  # the sink's own log lines (e.g. the lake's closed hours) show too
        logging.Formatter.converter = time.gmtime
        logging.basicConfig(level=level, format=fmt, datefmt=datefmt)
        logging.getLogger("kafka").setLevel(logging.CRITICAL)
    # the parent coordinates shutdown; die with it if it is killed (kill -9), so no
    # orphan keeps a transaction open
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    try:
        pr_set_pdeathsig = 1
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(pr_set_pdeathsig, signal.SIGKILL)
    except OSError:  # not Linux: the writer still exits when the parent closes the pool
        pass
    _WRITER_SINK = sink_factory()


def _writer_write(batch: Batch) -> tuple[int, int]:
    assert _WRITER_SINK is not None, "writer process not initialised"
    return _WRITER_SINK.write(batch)


def _backoff(attempt: int) -> float:
    return float(min(30, 2 ** min(attempt, 5)))


class IngestLoop:
    """Consume ``options.topic`` and land every message in ``sink`` exactly once."""

    def __init__(
        self,
        sink_factory: Callable[[], Sink],
        options: LoopOptions,
        consumer_factory: Callable[..., Any] | None = None,
    ):
        """``sink_factory`` must be picklable (a class, or functools.partial of one): the
        writer process builds its own sink with it."""
        self.sink_factory = sink_factory
        self.sink = sink_factory()
        self.options = options
        self.stats = Stats()
        self._stop = threading.Event()
        self._consumer_factory = consumer_factory
        self._consumer: Any = None
        self._listener = _make_listener()
        # next offset we expect per partition: records below it are already in the sink
        self._expected: dict[int, int] = {}
        self._end_targets: dict[int, int] | None = None
        self._last_log = time.monotonic()
        self._last_log_messages = 0
        self._batch = Batch(options.topic)
        self._inflight: tuple[Batch, Future[tuple[int, int]]] | None = None
        self._writer = self._new_writer()
        self._abandoned = False
        self._kafka_down = False
        self._committed: dict[int, int] = {}

    def _new_writer(self) -> ProcessPoolExecutor:
        return ProcessPoolExecutor(
            max_workers=1,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=_writer_init,
            initargs=(self.sink_factory, _log_config()),
        )

    # -- lifecycle -----------------------------------------------------------------

    def stop(self, *_: object) -> None:
        if not self._stop.is_set():
            log.info("stop requested: flushing the current batch, then exiting")
        self._stop.set()

    def install_signal_handlers(self) -> None:
        def handler(signum: int, _frame: FrameType | None) -> None:
            self.stop()

        signal.signal(signal.SIGINT, handler)
        signal.signal(signal.SIGTERM, handler)

    def _connect(self) -> Any:
        from kafka import KafkaConsumer
        from kafka.errors import KafkaTimeoutError

        factory = self._consumer_factory or KafkaConsumer
        attempt = 0
        while True:
            try:
                consumer = factory(
                    bootstrap_servers=self.options.bootstrap_servers.split(","),
                    group_id=self.options.group_id,
                    client_id=f"antenna-elt-{self.options.group_id}",
                    **CONSUMER_SETTINGS,
                )
            except KafkaTimeoutError:  # kafka-python 3: 'Unable to bootstrap from ...'
                bounded = self.options.until_caught_up or self.options.max_messages is not None
                if bounded or self._stop.is_set():
                    raise UserError(
                        f"Kafka at {self.options.bootstrap_servers} is unreachable; "
                        "start it with `make up` or set KAFKA_BOOTSTRAP_SERVERS"
                    ) from None
                wait = _backoff(attempt)
                log.warning(
                    "Kafka at %s unreachable; retrying in %.0f s (start it with `make up` "
                    "or set KAFKA_BOOTSTRAP_SERVERS)",
                    self.options.bootstrap_servers,
                    wait,
                )
                attempt += 1
                self._stop.wait(wait)
                continue
            consumer.subscribe([self.options.topic], listener=self._listener)
            return consumer

    def run(self) -> Stats:
        """Run until stopped (signal, --max-messages or --until-caught-up)."""
        self.sink.setup()
        self._consumer = self._connect()
        log.info(
            "consuming %s from %s as group %s into %s (batch %d messages or %.1f s)",
            self.options.topic,
            self.options.bootstrap_servers,
            self.options.group_id,
            self.sink.description,
            self.options.batch_size,
            self.options.max_latency,
        )
        if self.options.until_caught_up:
            self._end_targets = self._topic_end_offsets()
            log.info(
                "bounded run: stopping at end offsets %s (%d messages in the topic)",
                self._end_targets,
                sum(self._end_targets.values()),
            )
        last_progress = time.monotonic()
        try:
            while not self._stop.is_set():
                remaining = self._remaining_budget()
                if remaining == 0:
                    break
                room = max(1, min(5000, self.options.batch_size - len(self._batch)))
                records = self._consumer.poll(
                    timeout_ms=self._poll_timeout_ms(),
                    max_records=min(remaining, room) if remaining is not None else room,
                )
                self._handle_rebalance()
                if self._add_records(self._batch, records):
                    last_progress = time.monotonic()
                if self._should_flush(self._batch):
                    self._submit()
                self._maybe_log_progress()
                if self._caught_up():
                    log.info("caught up with the end offsets seen at start")
                    break
                idle = self.options.idle_timeout
                if idle is not None and time.monotonic() - last_progress > idle:
                    raise UserError(
                        f"no progress for {idle:.0f} s while catching up with "
                        f"{self.options.topic}; is Kafka at {self.options.bootstrap_servers} up?"
                    )
            if len(self._batch):
                self._submit()
            self._settle()
        finally:
            self._close()
        self._log_summary()
        return self.stats

    # -- steps -----------------------------------------------------------------------

    def _remaining_budget(self) -> int | None:
        if self.options.max_messages is None:
            return None
        inflight = len(self._inflight[0]) if self._inflight else 0
        return max(0, self.options.max_messages - self.stats.messages - len(self._batch) - inflight)

    def _poll_timeout_ms(self) -> int:
        if not len(self._batch):
            return 500
        left = self.options.max_latency - (time.monotonic() - self._batch.started)
        return max(0, min(500, int(left * 1000)))

    def _topic_end_offsets(self) -> dict[int, int]:
        from kafka import TopicPartition

        deadline = time.monotonic() + 60
        while True:
            parts = self._consumer.partitions_for_topic(self.options.topic)
            if parts:
                tps = [TopicPartition(self.options.topic, p) for p in sorted(parts)]
                ends = self._consumer.end_offsets(tps)
                return {tp.partition: off for tp, off in ends.items()}
            if time.monotonic() > deadline:
                raise UserError(
                    f"topic {self.options.topic!r} not found at {self.options.bootstrap_servers}; "
                    "create it (`make up` creates `devices`) or pass --topic"
                )
            time.sleep(0.5)

    def _handle_rebalance(self) -> None:
        to_seek, revoked = self._listener.take()
        if not to_seek and not revoked:
            return
        # the stored offsets must include the batch being written before we read them
        self._settle()
        for tp in revoked:
            self._expected.pop(tp.partition, None)
            self._drop_partition(self._batch, tp.partition)
        if not to_seek:
            return
        stored = self._stored_offsets_with_retry([tp.partition for tp in to_seek])
        for tp in sorted(to_seek, key=lambda t: t.partition):
            self._drop_partition(self._batch, tp.partition)
            self._seek(tp, stored.get(tp.partition))
        log.info(
            "assigned partitions %s; resuming at stored offsets %s",
            sorted(tp.partition for tp in to_seek),
            {p: stored.get(p, "beginning") for p in sorted(tp.partition for tp in to_seek)},
        )

    def _seek(self, tp: Any, offset: int | None) -> None:
        if offset is None:
            self._consumer.seek_to_beginning(tp)
            self._expected[tp.partition] = 0
        else:
            self._consumer.seek(tp, offset)
            self._expected[tp.partition] = offset

    @staticmethod
    def _drop_partition(batch: Batch, partition: int) -> None:
        """Forget buffered messages of a partition (they will be read again)."""
        if partition not in batch.first_offsets:
            return
        batch.messages = [m for m in batch.messages if m[0] != partition]
        del batch.first_offsets[partition]
        del batch.next_offsets[partition]

    def _add_records(self, batch: Batch, records: dict[Any, list[Any]]) -> int:
        added = 0
        append = batch.messages.append
        first_offsets = batch.first_offsets
        size = 0
        for tp, messages in records.items():
            partition = tp.partition
            expected = self._expected.get(partition)
            if expected is None:
                # assigned but not yet seeked (the callback landed after this fetch)
                continue
            for msg in messages:
                offset = msg.offset
                if offset < expected:
                    continue  # already in the sink
                value = msg.value
                append((partition, offset, value))
                if value is not None:
                    size += len(value)
                if partition not in first_offsets:
                    first_offsets[partition] = offset
                expected = offset + 1
                added += 1
            self._expected[partition] = expected
            if partition in first_offsets:
                batch.next_offsets[partition] = expected
        batch.value_bytes += size
        if added and not batch.started:
            batch.started = time.monotonic()
        return added

    def _should_flush(self, batch: Batch) -> bool:
        if not len(batch):
            return False
        if len(batch) >= self.options.batch_size:
            return True
        max_bytes = self.options.max_batch_bytes
        if max_bytes is not None and batch.value_bytes >= max_bytes:
            return True
        if time.monotonic() - batch.started >= self.options.max_latency:
            return True
        if self._remaining_budget() == 0:
            return True
        return self._end_targets is not None and self._reached_targets()

    def _submit(self) -> None:
        """Hand the current batch to the writer thread and start a new one.

        One batch is written while the next is consumed and validated (the database's
        work overlaps ours); writes stay strictly in order because the previous one is
        settled first.
        """
        self._settle()
        if self._abandoned:
            return
        batch, self._batch = self._batch, Batch(self.options.topic)
        self._inflight = (batch, self._writer.submit(_writer_write, batch))

    def _settle(self) -> None:
        """Wait for the batch being written; retry it while the sink is down; on a stale
        batch, drop what was read after it and re-read from the stored offsets."""
        if self._inflight is None:
            return
        batch, future = self._inflight
        self._inflight = None
        try:
            written = future.result()
        except StaleBatch as exc:
            self.stats.stale_batches += 1
            log.warning("%s; re-reading from the stored offsets", exc)
            partitions = set(batch.first_offsets) | set(self._batch.first_offsets)
            self._batch = Batch(self.options.topic)
            self._reseek(partitions)
            return
        except BrokenProcessPool as exc:
            log.error("the writer process died (%s); starting a new one", exc)
            self._writer.shutdown(wait=False)
            self._writer = self._new_writer()
            retried = self._write_with_retry(batch, SinkUnavailable("writer process restarted"))
            if retried is None:
                return
            written = retried
        except SinkUnavailable as exc:
            retried = self._write_with_retry(batch, exc)
            if retried is None:
                return
            written = retried
        self._account(batch, written)

    def _write_with_retry(self, batch: Batch, error: SinkUnavailable) -> tuple[int, int] | None:
        attempt = 0
        while True:
            if self._stop.is_set():
                log.warning(
                    "stopping with %d unwritten messages (%s); they are read again on the next start",
                    len(batch) + len(self._batch),
                    error,
                )
                self._abandoned = True
                self._batch = Batch(self.options.topic)
                return None
            wait = _backoff(attempt)
            log.warning(
                "%s unavailable (%s); retrying in %.0f s", self.sink.description, error, wait
            )
            attempt += 1
            self._keep_group_alive(wait)
            try:
                written = self.sink.write(batch)
            except SinkUnavailable as exc:
                error = exc
                continue
            except StaleBatch as exc:
                # the lost connection had committed after all: the sink holds this batch
                self.stats.stale_batches += 1
                log.warning("%s; re-reading from the stored offsets", exc)
                partitions = set(batch.first_offsets) | set(self._batch.first_offsets)
                self._batch = Batch(self.options.topic)
                self._reseek(partitions)
                return None
            log.info("%s is back; batch of %d messages written", self.sink.description, len(batch))
            return written

    def _account(self, batch: Batch, written: tuple[int, int]) -> None:
        self.stats.events += written[0]
        self.stats.rejects += written[1]
        self.stats.batches += 1
        self._committed.update(batch.next_offsets)
        self._commit_to_kafka(batch.next_offsets)

    def _keep_group_alive(self, seconds: float) -> None:
        """Wait without breaking the group: paused polls keep the consumer a member."""
        deadline = time.monotonic() + seconds
        assigned = list(self._consumer.assignment())
        self._consumer.pause(*assigned)
        try:
            while time.monotonic() < deadline and not self._stop.is_set():
                self._consumer.poll(timeout_ms=200)
        finally:
            self._consumer.resume(*[tp for tp in assigned if tp in self._consumer.assignment()])

    def _reseek(self, partitions: Iterable[int]) -> None:
        owned = {tp.partition: tp for tp in self._consumer.assignment()}
        wanted = [p for p in partitions if p in owned]
        stored = self._stored_offsets_with_retry(wanted)
        for p in wanted:
            self._seek(owned[p], stored.get(p))

    def _stored_offsets_with_retry(self, partitions: list[int]) -> dict[int, int]:
        attempt = 0
        while True:
            try:
                return self.sink.stored_offsets(self.options.topic, partitions)
            except SinkUnavailable as exc:
                wait = _backoff(attempt)
                log.warning(
                    "%s unavailable while reading stored offsets (%s); retrying in %.0f s",
                    self.sink.description,
                    exc,
                    wait,
                )
                attempt += 1
                if self._stop.wait(wait):
                    raise UserError(
                        f"stopped while {self.sink.description} was unavailable"
                    ) from None

    def _commit_to_kafka(self, next_offsets: dict[int, int]) -> None:
        """Mirror the sink's offsets to Kafka for lag tools; failures are harmless."""
        from kafka import TopicPartition
        from kafka.structs import OffsetAndMetadata

        owned = {tp.partition for tp in self._consumer.assignment()}
        offsets = {
            TopicPartition(self.options.topic, p): OffsetAndMetadata(o, "", -1)
            for p, o in next_offsets.items()
            if p in owned
        }
        if offsets:
            try:
                self._consumer.commit_async(offsets=offsets, callback=lambda *_: None)
            except Exception as exc:
                log.debug("informational Kafka offset commit failed: %s", exc)

    def _reached_targets(self) -> bool:
        """Every owned partition has been read up to its end offset seen at start."""
        if self._end_targets is None:
            return False
        owned = {tp.partition for tp in self._consumer.assignment()}
        if not owned:
            return False
        return all(self._expected.get(p, -1) >= self._end_targets.get(p, 0) for p in owned)

    def _caught_up(self) -> bool:
        if self._end_targets is None or len(self._batch) or not self._reached_targets():
            return False
        self._settle()
        # a stale or abandoned write re-seeks: then we are not done yet
        return self._reached_targets() and not len(self._batch)

    def _maybe_log_progress(self) -> None:
        now = time.monotonic()
        if now - self._last_log < self.options.log_interval:
            return
        interval = now - self._last_log
        done = self.stats.messages
        rate = (done - self._last_log_messages) / interval if interval else 0.0
        self._last_log, self._last_log_messages = now, done
        log.info(
            "ingested %d events, %d rejects (%.0f msg/s over the last %.0f s); lag %s",
            self.stats.events,
            self.stats.rejects,
            rate,
            interval,
            self._lag_text(),
        )

    def _lag_text(self) -> str:
        assigned = list(self._consumer.assignment())
        if not assigned:
            return "unknown (no partitions assigned yet)"
        try:
            ends = self._consumer.end_offsets(assigned, timeout_ms=5000)
        except Exception as exc:
            if not self._kafka_down:
                self._kafka_down = True
                log.warning(
                    "Kafka at %s is unreachable (%s); the consumer keeps retrying and resumes "
                    "where it stopped",
                    self.options.bootstrap_servers,
                    type(exc).__name__,
                )
            return "unknown (Kafka unreachable)"
        if self._kafka_down:
            self._kafka_down = False
            log.info("Kafka at %s is back", self.options.bootstrap_servers)
        total = 0
        parts = []
        for tp in sorted(assigned, key=lambda t: t.partition):
            lag = max(0, ends.get(tp, 0) - self._expected.get(tp.partition, 0))
            total += lag
            parts.append(f"p{tp.partition}={lag}")
        return f"{total} messages ({', '.join(parts)})"

    def _log_summary(self) -> None:
        elapsed = time.monotonic() - self.stats.started
        rate = self.stats.messages / elapsed if elapsed else 0.0
        log.info(
            "done: %d events and %d rejects in %d batches, %.1f s (%.0f msg/s)",
            self.stats.events,
            self.stats.rejects,
            self.stats.batches,
            elapsed,
            rate,
        )

    def _close(self) -> None:
        self._writer.shutdown(wait=True)
        try:
            if self._consumer is not None:
                self._consumer.close(autocommit=False)
        finally:
            self.sink.close()
