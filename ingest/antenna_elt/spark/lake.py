"""What each micro-batch of ``ingest spark`` writes into the lake, exactly once for every
reader.

Spark's own file sink keeps a log of committed files (``_spark_metadata``) that only Spark
readers consult: DuckDB's glob, the BigQuery loader and dbt would see the files of a
failed or replayed batch. So the job does not use it. Each micro-batch goes through the
Python lake sink's own protocol, split between executors and driver:

1. the driver reads each partition's newest commit record (``_ingest/<group>/<topic>/
   <partition>/commits/``): the offset the lake holds it up to;
2. executors (``mapInArrow``, one task per Kafka partition range) drop the messages below
   that offset, validate the rest with the project's own :func:`antenna_elt.contract.parse`
   and write Parquet under temporary names in ``_ingest/.../tmp/``, which no reader globs
   (:meth:`LakeSink.stage`); they return only the files' names and counts;
3. the driver commits each partition with :meth:`LakeSink.commit`: open-hour markers, the
   commit record created exclusively (the commit point), the renames to the final names
   ``<topic>+<partition>+<first>+<last>.parquet``, the closed-hour manifests.

A job killed at any point restarts from its checkpoint and replays the micro-batch that
was running with the same offsets: recovery (at start) rolls the newest commit of every
partition forward and deletes uncommitted temporary files, and step 1 makes the replay
skip what was committed. A reader globbing ``*.parquet`` only ever sees renamed files of
committed records, each once.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from antenna_elt.ingest.batch import Batch
from antenna_elt.sinks.lake.commits import CommitLog, Record
from antenna_elt.sinks.lake.parquet import ROW_GROUP_ROWS
from antenna_elt.sinks.lake.sink import LakeSink, StagedPartition

log = logging.getLogger("antenna_elt.spark")

STAGED_SCHEMA = "partition int, staged string"


@dataclass(frozen=True)
class LakeConfig:
    """Everything an executor needs to build its own :class:`LakeSink` (picklable)."""

    lake_uri: str
    group: str
    close_grace: float = 600.0
    row_group_rows: int = ROW_GROUP_ROWS
    s3_endpoint: str | None = None

    def sink(self) -> LakeSink:
        return LakeSink(
            self.lake_uri,
            self.group,
            close_grace=self.close_grace,
            row_group_rows=self.row_group_rows,
            s3_endpoint=self.s3_endpoint,
            # the spark target's registration (macros/ingest_increments.sql) does not apply
            # the manifests' rule of live files yet: it would read a compacted file beside
            # the files it replaced during their grace period
            compact=False,
        )


KAFKA_COLUMNS = ("partition", "offset", "value", "unix_millis(timestamp) as timestamp_ms")
"""The Kafka source's columns the executors read, in :func:`floor_messages`' order (the
record's timestamp bounds how far in the future an event time may be, as in the Python
ingestors; -1 when the producer set none)."""


def floor_messages(
    batches: Iterable[Any], floors: dict[int, int]
) -> list[tuple[int, int, bytes | None, int | None]]:
    """(partition, offset, value, record timestamp in ms) of Arrow record batches of
    :data:`KAFKA_COLUMNS`, without the offsets below each partition's floor (what the
    lake or the database already holds)."""
    messages: list[tuple[int, int, bytes | None, int | None]] = []
    append = messages.append
    for batch in batches:
        partitions = batch.column(0).to_pylist()
        offsets = batch.column(1).to_pylist()
        values = batch.column(2).to_pylist()
        stamps = batch.column(3).to_pylist() if batch.num_columns > 3 else [None] * len(offsets)
        for partition, offset, value, stamp in zip(
            partitions, offsets, values, stamps, strict=True
        ):
            if offset >= floors.get(partition, 0):
                append((partition, offset, value, stamp))
    return messages


def offset_ranges(
    messages: list[tuple[int, int, bytes | None, int | None]],
) -> tuple[dict[int, int], dict[int, int]]:
    """First and next offset of every partition in ``messages``."""
    first: dict[int, int] = {}
    nxt: dict[int, int] = {}
    for partition, offset, *_ in messages:
        if partition not in first or offset < first[partition]:
            first[partition] = offset
        if offset + 1 > nxt.get(partition, -1):
            nxt[partition] = offset + 1
    return first, nxt


@dataclass(frozen=True)
class StageOnExecutor:
    """The executors' part (``mapInArrow``): validate and stage one task's messages."""

    config: LakeConfig
    topic: str
    floors: dict[int, int]
    numbers: dict[int, int]
    """The commit record number each partition's files are written for (the driver's
    heads' next)."""

    def __call__(self, batches: Iterator[Any]) -> Iterator[Any]:
        import pyarrow as pa

        messages = floor_messages(batches, self.floors)
        if not messages:
            return
        messages.sort(key=lambda m: (m[0], m[1]))
        first, nxt = offset_ranges(messages)
        rows, rejects = Batch(self.topic, messages).split()
        numbers = {p: self.numbers.get(p, CommitLog.next_number(None)) for p in first}
        staged = self.config.sink().stage(self.topic, rows, rejects, first, nxt, numbers)
        yield pa.RecordBatch.from_pydict(
            {
                "partition": pa.array(list(staged), pa.int32()),
                "staged": pa.array([json.dumps(s.to_json()) for s in staged.values()]),
            }
        )


def merge_staged(rows: Iterable[tuple[int, str]]) -> dict[int, StagedPartition]:
    """One staged range a partition (a partition split over several tasks, with the Kafka
    source's minPartitions, comes back in contiguous pieces)."""
    merged: dict[int, StagedPartition] = {}
    for partition, text in rows:
        part = StagedPartition.from_json(json.loads(text))
        seen = merged.get(partition)
        if seen is None:
            merged[partition] = part
            continue
        times = [t for t in (seen.max_event_time, part.max_event_time) if t is not None]
        merged[partition] = StagedPartition(
            partition=partition,
            number=seen.number,
            first_offset=min(seen.first_offset, part.first_offset),
            next_offset=max(seen.next_offset, part.next_offset),
            events=seen.events + part.events,
            rejects=seen.rejects + part.rejects,
            max_event_time=max(times) if times else None,
            files=seen.files + part.files,
        )
    return merged


class LakeBatchWriter:
    """The driver's part: ``foreachBatch`` function of the lake query."""

    description: str

    def __init__(self, config: LakeConfig, topic: str):
        self.config = config
        self.topic = topic
        self.sink = config.sink()
        self.description = self.sink.description

    def recover(self, partitions: Iterable[int]) -> dict[int, int]:
        """At start: check the lake is writable, roll every partition's newest commit
        forward, delete uncommitted files; returns the offsets the lake holds."""
        self.sink.setup()
        return self.sink.stored_offsets(self.topic, partitions)

    def heads(self, partitions: Iterable[int]) -> dict[int, tuple[Record | None, list[str]]]:
        """Each partition's newest commit record (and the kept records' names)."""
        return {p: self.sink.commits.head(self.topic, p) for p in partitions}

    @staticmethod
    def floors(heads: dict[int, tuple[Record | None, list[str]]]) -> dict[int, int]:
        """The offset each partition is stored up to (none: never written)."""
        return {
            p: int(head["next_offset"])
            for p, (head, _) in heads.items()
            if head is not None and head["next_offset"] is not None
        }

    def write(self, df: Any, partitions: Iterable[int]) -> tuple[int, int]:
        heads = self.heads(partitions)
        numbers = {p: CommitLog.next_number(head) for p, (head, _) in heads.items()}
        stage = StageOnExecutor(self.config, self.topic, self.floors(heads), numbers)
        metas = df.selectExpr(*KAFKA_COLUMNS).mapInArrow(stage, STAGED_SCHEMA).collect()
        staged = merge_staged((row["partition"], row["staged"]) for row in metas)
        if not staged:
            return 0, 0
        # the heads the files were numbered after: a writer that committed in between
        # makes this batch stale (nothing of it visible)
        written = self.sink.commit(self.topic, staged, {p: heads[p] for p in staged if p in heads})
        for partition, part in staged.items():
            # files of failed task attempts, written for the number now committed: no task
            # of this query runs between batches, and nobody can commit them any more
            self.sink.commits.delete_uncommitted(self.topic, partition, part.number)
        return written

    def watermark(self) -> int | None:
        return self.sink.watermark(self.topic)
