"""The Structured Streaming query of ``antenna-elt ingest spark``.

Spark's Kafka source reads the topic; each micro-batch goes to ``foreachBatch`` and a
batch writer (:mod:`.lake` or :mod:`.postgres`) that lands it exactly once with the same
protocol as the Python ingestors. Spark keeps the Kafka offsets of every micro-batch in
its checkpoint and replays an unfinished one after a crash; the writers make the replay
harmless. Where the checkpoint is new, the query starts at the offsets the sink holds
(so switching from ``ingest lake`` to ``ingest spark`` on the same lake and group goes on
where it stopped).
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

from antenna_elt.errors import UserError
from antenna_elt.ingest.retry import retry
from antenna_elt.ingest.sink import SinkUnavailable, first_line
from antenna_elt.ingest.stopping import StopOnSignal

log = logging.getLogger("antenna_elt.spark")

KAFKA_CHECK_SECONDS = 10.0


class BatchWriter(Protocol):
    description: str

    def recover(self, partitions: Iterable[int]) -> dict[int, int]: ...

    def write(self, df: Any, partitions: Iterable[int]) -> tuple[int, int]: ...

    def watermark(self) -> int | None: ...


@dataclass
class StreamOptions:
    topic: str
    bootstrap_servers: str
    checkpoint: str
    """Spark's checkpoint location of this query (one per sink, group and topic)."""
    trigger_seconds: float = 10.0
    """Processing-time trigger: a micro-batch every this many seconds."""
    available_now: bool = False
    """Process what the topic holds at start (in micro-batches) and stop."""
    max_offsets_per_trigger: int | None = 100_000
    """Messages per micro-batch at most (split over the partitions by lag)."""
    log_interval: float = 10.0


@dataclass
class StreamStats:
    events: int = 0
    rejects: int = 0
    batches: int = 0
    started: float = field(default_factory=time.monotonic)
    first_batch_at: float | None = None
    """Seconds from start to the first micro-batch written (JVM, session, query start)."""

    @property
    def messages(self) -> int:
        return self.events + self.rejects


def kafka_partitions(bootstrap_servers: str, topic: str) -> dict[int, int]:
    """Partitions of ``topic`` and their end offsets, or a one-line error: Spark's source
    does not fail on an unreachable broker, it waits for offsets forever."""
    from kafka import KafkaConsumer, TopicPartition
    from kafka.errors import KafkaError

    try:
        consumer = KafkaConsumer(
            bootstrap_servers=bootstrap_servers.split(","),
            enable_auto_commit=False,
            request_timeout_ms=int(KAFKA_CHECK_SECONDS * 1000) + 1000,
        )
    except (KafkaError, ValueError) as exc:
        raise UserError(
            f"Kafka at {bootstrap_servers} is unreachable ({first_line(exc)}); start it with "
            "`make up` or set KAFKA_BOOTSTRAP_SERVERS"
        ) from None
    try:
        deadline = time.monotonic() + KAFKA_CHECK_SECONDS
        while True:
            parts = consumer.partitions_for_topic(topic)
            if parts:
                ends = consumer.end_offsets([TopicPartition(topic, p) for p in sorted(parts)])
                return {tp.partition: int(end) for tp, end in ends.items()}
            if time.monotonic() > deadline:
                raise UserError(
                    f"topic {topic!r} not found at {bootstrap_servers}; create it "
                    "(`make up` creates `devices`) or pass --topic"
                )
            time.sleep(0.5)
    finally:
        consumer.close()


def starting_offsets(topic: str, partitions: Iterable[int], stored: dict[int, int]) -> str:
    """The Kafka source's startingOffsets (used only with a new checkpoint): the sink's
    offsets, the earliest (-2) where it holds nothing."""
    return json.dumps({topic: {str(p): stored.get(p, -2) for p in sorted(partitions)}})


class SparkIngest(StopOnSignal):
    """Run the streaming query until stopped, caught up (``available_now``) or failed."""

    _stop_log = log
    _stop_doing = "finishing the current micro-batch"

    def __init__(
        self,
        spark: Any,
        writer: BatchWriter,
        options: StreamOptions,
        *,
        on_batch: Callable[[int, StreamStats], None] | None = None,
    ):
        self.spark = spark
        self.writer = writer
        self.options = options
        self.stats = StreamStats()
        self.on_batch = on_batch
        self._stop = threading.Event()
        self._partitions: list[int] = []
        self._last_log = time.monotonic()
        self._logged_messages = 0

    # -- one micro-batch -----------------------------------------------------------------

    def _write_batch(self, df: Any, batch_id: int) -> None:
        def unavailable(exc: BaseException, wait: float) -> None:
            if self._stop.is_set():
                raise UserError(
                    f"stopped while {self.writer.description} was unavailable; the "
                    "micro-batch is replayed on the next start"
                ) from None
            log.warning(
                "%s unavailable (%s); retrying in %.0f s", self.writer.description, exc, wait
            )

        events, rejects = retry(
            lambda: self.writer.write(df, self._partitions),
            retry_on=SinkUnavailable,
            on_failure=unavailable,
            wait=lambda s: self._stop.wait(s),
        )
        stats = self.stats
        stats.events += events
        stats.rejects += rejects
        stats.batches += 1
        if stats.first_batch_at is None and events + rejects:
            stats.first_batch_at = time.monotonic() - stats.started
        if self.on_batch is not None:
            self.on_batch(batch_id, stats)
        now = time.monotonic()
        if now - self._last_log >= self.options.log_interval:
            rate = (stats.messages - self._logged_messages) / max(now - self._last_log, 1e-9)
            log.info(
                "batch %d: %d events, %d rejects so far (%.0f messages/s)",
                batch_id, stats.events, stats.rejects, rate,
            )  # fmt: skip
            self._last_log, self._logged_messages = now, stats.messages

    # -- the query -----------------------------------------------------------------------

    def run(self) -> StreamStats:
        opts = self.options
        ends = kafka_partitions(opts.bootstrap_servers, opts.topic)
        self._partitions = sorted(ends)
        stored = self.writer.recover(self._partitions)
        reader = (
            self.spark.readStream.format("kafka")
            .option("kafka.bootstrap.servers", opts.bootstrap_servers)
            .option("subscribe", opts.topic)
            .option("startingOffsets", starting_offsets(opts.topic, self._partitions, stored))
            .option("failOnDataLoss", "true")
        )
        if opts.max_offsets_per_trigger:
            reader = reader.option("maxOffsetsPerTrigger", str(opts.max_offsets_per_trigger))
        writer = (
            reader.load()
            .writeStream.queryName(f"antenna-elt-{opts.topic}")
            .option("checkpointLocation", opts.checkpoint)
            .foreachBatch(self._write_batch)
        )
        if opts.available_now:
            writer = writer.trigger(availableNow=True)
        else:
            writer = writer.trigger(processingTime=f"{opts.trigger_seconds:g} seconds")
        log.info(
            "consuming %s from %s into %s with Spark %s (checkpoint %s; %s; stored offsets %s)",
            opts.topic,
            opts.bootstrap_servers,
            self.writer.description,
            self.spark.version,
            opts.checkpoint,
            "until caught up"
            if opts.available_now
            else f"a micro-batch every {opts.trigger_seconds:g} s",
            {p: stored.get(p, "beginning") for p in self._partitions},
        )
        query = writer.start()
        try:
            while not query.awaitTermination(1.0):
                if self._stop.is_set():
                    query.stop()
                    break
        except Exception as exc:
            raise UserError(f"the Spark query failed: {_query_error(exc)}") from None
        finally:
            if query.isActive:
                query.stop()
        if query.exception() is not None:
            raise UserError(f"the Spark query failed: {_query_error(query.exception())}")
        elapsed = time.monotonic() - self.stats.started
        log.info(
            "done: %d events, %d rejects in %d micro-batches, %.1f s",
            self.stats.events, self.stats.rejects, self.stats.batches, elapsed,
        )  # fmt: skip
        return self.stats


def _query_error(exc: BaseException) -> str:
    text = str(exc).strip()
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith(("at ", "===", "JVM stacktrace")):
            return line[:500]
    return type(exc).__name__
