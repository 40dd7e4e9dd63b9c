"""Lake sink: every loop batch becomes Parquet files plus one commit record a partition.

One batch = one commit. For each Kafka partition in the batch the sink writes one file
per event hour (rows in offset order) and one rejects file, under temporary names that
readers never glob (:mod:`.parquet`) and that carry this writer's id; then it creates the
partition's next commit record in its chain (the commit point, :mod:`.commits`); then it
renames the files to their final, deterministic names
``<topic>+<partition>+<first>+<last>.parquet`` (:mod:`.layout`). On assignment
(:meth:`LakeSink.stored_offsets`) it recovers each partition: rolls the newest commit
forward, fences the partition against writers that lost it (zombies) and deletes the
temporary files nobody can commit any more. So a crash at any point leaves no partial
file, loses nothing and duplicates nothing, and any number of instances in one group
commit every offset once without touching each other's files. Files are never
rewritten by the sink: late events add a file to their hour. Hours close on an event-time
watermark (:mod:`.hours`); a closed hour's small files are then compacted
(:mod:`.compaction`), right after the commit that closed the hour or added late events to
it, and the files compaction replaced are deleted after a grace period.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import uuid
from collections import defaultdict
from collections.abc import Iterable, Iterator
from typing import Any

from antenna_elt.clock import SYSTEM_CLOCK, Clock
from antenna_elt.errors import UserError
from antenna_elt.ingest.batch import Batch, RejectRow, Row
from antenna_elt.ingest.sink import SinkUnavailable, StaleBatch, first_line
from antenna_elt.sinks.lake import layout as L
from antenna_elt.sinks.lake import parquet
from antenna_elt.sinks.lake.commits import CommitLog, Record
from antenna_elt.sinks.lake.compaction import (
    GRACE_SECONDS,
    TARGET_BYTES,
    AutoCompactor,
    Compactor,
    stop_at,
)
from antenna_elt.sinks.lake.hours import IDLE_PARTITION_SECONDS, HourCloser
from antenna_elt.sinks.lake.storage import Lake, LakeLocation, is_unavailable

log = logging.getLogger("antenna_elt.ingest.lake")

REJECTS_FILE_NUMBER = 1000
"""Temporary file number of a partition's rejects (events files count from 0)."""

VALIDATE_CHUNK = 8192
"""Messages validated into Python rows at a time before they become Arrow columns."""


@dataclasses.dataclass
class PendingFile:
    """A file written under a temporary name, and the name it gets when committed."""

    tmp: str
    path: str
    table: str
    hour: int
    rows: int


@dataclasses.dataclass
class StagedPartition:
    """What a batch staged for one partition: the offsets it covers, its counts, its
    temporary files and the number of the commit record they were written for;
    :meth:`LakeSink.commit` turns it into that record."""

    partition: int
    number: int
    first_offset: int
    next_offset: int
    events: int
    rejects: int
    max_event_time: int | None
    files: list[PendingFile]

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> StagedPartition:
        return cls(**{**data, "files": [PendingFile(**f) for f in data["files"]]})


class LakeSink:
    """Land batches as Parquet in ``<lake>/device_usage`` (+ rejects), exactly once."""

    def __init__(
        self,
        lake_uri: str,
        consumer_group: str,
        *,
        close_grace: float = 600.0,
        row_group_rows: int = parquet.ROW_GROUP_ROWS,
        compression: str = "zstd",
        idle_partition_seconds: float = IDLE_PARTITION_SECONDS,
        s3_endpoint: str | None = None,
        compact: bool = True,
        compact_target_bytes: int = TARGET_BYTES,
        compact_grace: float = GRACE_SECONDS,
        compact_failpoint: str | None = None,
        clock: Clock = SYSTEM_CLOCK,
    ):
        self.location = LakeLocation.parse(lake_uri)
        self.lake = Lake(self.location, s3_endpoint)
        self.group = consumer_group
        self.row_group_rows = row_group_rows
        self.compression = compression
        self.clock = clock
        self.description = f"Parquet lake {self.location.uri}"
        self.commits = CommitLog(self.lake, consumer_group)
        """One writer id per sink instance: the writer process's and the loop's differ."""
        self.hours = HourCloser(
            self.lake,
            self.commits,
            close_grace=close_grace,
            idle_partition_seconds=idle_partition_seconds,
            clock=clock,
        )
        self.compactor = (
            AutoCompactor(
                Compactor(
                    self.lake,
                    target_bytes=compact_target_bytes,
                    row_group_rows=row_group_rows,
                    compression=compression,
                    grace=compact_grace,
                    clock=clock,
                    step=stop_at(compact_failpoint),
                )
            )
            if compact
            else None
        )
        """Compacts the hours this sink closes or adds late events to (:mod:`.compaction`)."""

    # -- Sink protocol ---------------------------------------------------------------------

    def setup(self) -> None:
        probe = f"_ingest/{self.group}/_probe-{uuid.uuid4().hex[:8]}"
        try:
            self.lake.ensure_dir(f"_ingest/{self.group}")
            self.lake.write_file(probe, b"ok")
            self.lake.delete(probe)
        except UserError:
            raise
        except Exception as exc:
            hint = (
                "check the path's permissions"
                if self.lake.local
                else "check the bucket, the credentials and ANTENNA_ELT_S3_ENDPOINT"
            )
            raise UserError(
                f"cannot write to the lake at {self.location.uri} ({_describe(exc)}); {hint}, "
                "or pass --lake / set ANTENNA_ELT_LAKE"
            ) from None

    def stored_offsets(self, topic: str, partitions: Iterable[int]) -> dict[int, int]:
        """Recover each partition (roll its newest commit forward, drop uncommitted
        files), then return where it stands."""
        result: dict[int, int] = {}
        with self._storage_errors():
            # an hour's manifest or marker being replaced when a writer was killed
            for folder in (L.CLOSED_HOURS, L.OPEN_HOURS):
                self.lake.sweep_partials(folder)
            for partition in partitions:
                fence, head, event_hours = self.commits.recover(topic, partition)
                if head is not None:
                    self.hours.note_files(head)
                    self.hours.refresh_closed(event_hours)
                if fence["next_offset"] is not None:
                    result[partition] = int(fence["next_offset"])
        return result

    def write(self, batch: Batch) -> tuple[int, int]:
        with self._storage_errors():
            return self._write(batch)

    def close(self) -> None:
        pass

    # -- writing ---------------------------------------------------------------------------

    @contextlib.contextmanager
    def _storage_errors(self) -> Iterator[None]:
        """Storage outages (network, S3 down, disk full) become SinkUnavailable: retried."""
        try:
            yield
        except (StaleBatch, SinkUnavailable, UserError):
            raise
        except Exception as exc:
            if is_unavailable(exc):
                raise SinkUnavailable(f"{self.location.uri}: {_describe(exc)}") from exc
            raise

    def _write(self, batch: Batch) -> tuple[int, int]:
        topic = batch.topic
        ingested_us = int(self.clock.time() * 1_000_000)
        events, rejects = self._validate(batch, ingested_us)
        done_events = done_rejects = 0
        todo: list[int] = []
        heads: dict[int, tuple[Record | None, list[str]]] = {}
        for partition in sorted(batch.first_offsets):
            first, nxt = batch.first_offsets[partition], batch.next_offsets[partition]
            head, _ = heads[partition] = self.commits.head(topic, partition)
            if head is not None and head["first_offset"] == first and head["next_offset"] == nxt:
                # committed by an earlier attempt whose answer was lost: finish it
                self._roll_forward(head)
                done_events += int(head["events"])
                done_rejects += int(head["rejects"])
                continue
            stored = None if head is None else head["next_offset"]
            if stored is not None and int(stored) > first:
                raise StaleBatch(
                    f"partition {partition} is already stored up to offset {stored} "
                    f"but this batch starts at {first}"
                )
            if head is not None and not self.commits.rolled_forward(head):
                # this batch builds on the head: its files get their final names first
                self._roll_forward(head)
            todo.append(partition)
        if len(todo) < len(batch.first_offsets):
            wanted = set(todo)
            events = _only_partitions(events, todo)
            rejects = [r for r in rejects if r[0] in wanted]

        staged = self._stage_table(
            topic,
            events,
            rejects,
            {p: batch.first_offsets[p] for p in todo},
            {p: batch.next_offsets[p] for p in todo},
            {p: self.commits.next_number(heads[p][0]) for p in todo},
            ingested_us,
        )
        del events
        written_events, rejected = self.commit(topic, staged, heads)
        return done_events + written_events, done_rejects + rejected

    def _validate(self, batch: Batch, ingested_us: int) -> tuple[Any, list[RejectRow]]:
        """The batch's events as one Arrow table and its rejects, validated
        :data:`VALIDATE_CHUNK` messages at a time: a chunk's rows (Python objects, several
        times the size of their Arrow columns) are freed before the next is parsed."""
        import pyarrow as pa

        parquet.lean_arrow()
        tables = []
        rejects: list[RejectRow] = []
        for start in range(0, len(batch), VALIDATE_CHUNK):
            rows, chunk_rejects = batch.split(start, start + VALIDATE_CHUNK)
            if rows:
                tables.append(parquet.events_table(batch.topic, rows, ingested_us))
            rejects += chunk_rejects
        if not tables:
            return parquet.events_table(batch.topic, [], ingested_us), rejects
        return pa.concat_tables(tables), rejects

    def stage(
        self,
        topic: str,
        rows: list[Row],
        rejects: list[Any],
        first_offsets: dict[int, int],
        next_offsets: dict[int, int],
        numbers: dict[int, int],
    ) -> dict[int, StagedPartition]:
        """Write the files of validated rows under temporary names (nobody reads them
        before :meth:`commit`), for commit record ``numbers[p]`` of each partition p. The
        offsets say which range of each partition the rows cover; the Spark ingestor's
        executors call this, its driver commits."""
        ingested_us = int(self.clock.time() * 1_000_000)
        return self._stage_table(
            topic,
            parquet.events_table(topic, rows, ingested_us),
            rejects,
            first_offsets,
            next_offsets,
            numbers,
            ingested_us,
        )

    def _stage_table(
        self,
        topic: str,
        events: Any,
        rejects: list[Any],
        first_offsets: dict[int, int],
        next_offsets: dict[int, int],
        numbers: dict[int, int],
        ingested_us: int,
    ) -> dict[int, StagedPartition]:
        """:meth:`stage` of an events table (:func:`.parquet.events_table`)."""
        files = self._stage_files(topic, events, rejects, numbers, ingested_us)
        figures = parquet.partition_figures(events)
        rejected: dict[int, int] = defaultdict(int)
        for reject in rejects:
            rejected[reject[0]] += 1
        return {
            partition: StagedPartition(
                partition=partition,
                number=numbers[partition],
                first_offset=first_offsets[partition],
                next_offset=next_offsets[partition],
                events=figures.get(partition, (0, None))[0],
                rejects=rejected[partition],
                max_event_time=figures.get(partition, (0, None))[1],
                files=files.get(partition, []),
            )
            for partition in sorted(first_offsets)
        }

    def commit(
        self,
        topic: str,
        staged: dict[int, StagedPartition],
        heads: dict[int, tuple[Record | None, list[str]]] | None = None,
    ) -> tuple[int, int]:
        """Commit staged partitions: mark their hours open, create each partition's next
        commit record in its chain (the commit point), give the files their final names,
        close the hours the watermark has passed. ``heads`` are the records the staging
        built on (read again when missing). Raises :class:`StaleBatch` when another writer
        committed first; then nothing of that partition or of those after it is committed
        and their files are deleted. Returns (events, rejects)."""
        heads = dict(heads or {})
        late_hours = self.hours.mark_open(
            {f.hour for s in staged.values() for f in s.files if f.table == L.EVENTS_TABLE}
        )
        done_events = done_rejects = 0
        todo = sorted(staged)
        for n, partition in enumerate(todo):
            part = staged[partition]
            if partition not in heads:
                heads[partition] = self.commits.head(topic, partition)
            head, older = heads[partition]
            previous_max = head.get("max_event_time") if head else None
            candidates = [t for t in (previous_max, part.max_event_time) if t is not None]
            max_event_time = max(candidates) if candidates else None
            committed_epoch = self.clock.time()
            record: Record = {
                **self.commits.chain_fields(head),
                "group": self.group,
                "topic": topic,
                "partition": partition,
                "first_offset": part.first_offset,
                "next_offset": part.next_offset,
                "events": part.events,
                "rejects": part.rejects,
                "max_event_time": max_event_time,
                "committed_at": L.utc_now_text(),
                "committed_epoch": committed_epoch,
                "files": [dataclasses.asdict(f) for f in part.files],
            }
            if record["number"] != part.number or not self.commits.commit(record):
                # nothing of this partition (or of those after it) will ever be committed
                for p in todo[n:]:
                    for f in staged[p].files:
                        self.lake.delete(f.tmp)
                raise StaleBatch(
                    f"partition {partition}: another writer committed after offset "
                    f"{head['next_offset'] if head else 'none'} first"
                )
            self._roll_forward(record, refresh_manifests=False)
            self.commits.prune(topic, partition, older)
            self.hours.committed(topic, partition, max_event_time, committed_epoch)
            done_events += part.events
            done_rejects += part.rejects

        for hour in sorted(late_hours):
            log.info("late events for closed hour %s: manifest rewritten", L.hour_label(hour))
            self.hours.write_manifest(hour)
        closed = self.hours.close_hours(topic)
        if self.compactor is not None:
            self.compactor.after_commit(sorted(late_hours | set(closed)))
        return done_events, done_rejects

    def _stage_files(
        self,
        topic: str,
        events: Any,
        rejects: list[Any],
        numbers: dict[int, int],
        ingested_us: int,
    ) -> dict[int, list[PendingFile]]:
        """Write the batch's files under temporary names (for commit record ``numbers[p]``
        of partition p): one a (partition, event hour), rows in offset order, and one
        rejects file a partition, in the hour of ingestion."""
        files: dict[int, list[PendingFile]] = defaultdict(list)
        for n, (partition, hour, table) in enumerate(parquet.split_by_file(events)):
            first, last = parquet.first_last_offsets(table)
            path = (
                f"{L.hour_dir(L.EVENTS_TABLE, hour)}/{L.file_name(topic, partition, first, last)}"
            )
            files[partition].append(
                self._stage(
                    topic, partition, numbers[partition], n, path, L.EVENTS_TABLE, hour, table
                )
            )
        reject_hour = ingested_us // 1_000_000 // L.HOUR * L.HOUR
        for partition, table in parquet.reject_tables(topic, rejects, ingested_us):
            first, last = parquet.first_last_offsets(table)
            path = f"{L.hour_dir(L.REJECTS_TABLE, reject_hour)}/{L.file_name(topic, partition, first, last)}"
            files[partition].append(
                self._stage(
                    topic,
                    partition,
                    numbers[partition],
                    REJECTS_FILE_NUMBER,
                    path,
                    L.REJECTS_TABLE,
                    reject_hour,
                    table,
                )
            )
        return files

    def _stage(
        self,
        topic: str,
        partition: int,
        number: int,
        n: int,
        path: str,
        table_name: str,
        hour: int,
        table: Any,
    ) -> PendingFile:
        tmp = self.commits.tmp_name(topic, partition, number, n)
        data = parquet.encode(
            table, compression=self.compression, row_group_rows=self.row_group_rows
        )
        self.lake.write_file(tmp, data)
        self.hours.file_rows[path] = table.num_rows
        return PendingFile(tmp=tmp, path=path, table=table_name, hour=hour, rows=table.num_rows)

    def _roll_forward(self, record: Record, *, refresh_manifests: bool = True) -> None:
        """Give every file of a commit its final name (idempotent); when recovering, also
        add late files to the manifest of their closed hour."""
        event_hours = self.commits.roll_forward(record)
        self.hours.note_files(record)
        if refresh_manifests:
            self.hours.refresh_closed(event_hours)

    def watermark(self, topic: str) -> int | None:
        """Event time up to which every recently active partition is complete."""
        return self.hours.watermark(topic)


def _describe(exc: BaseException) -> str:
    text = first_line(exc) if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _only_partitions(events: Any, partitions: list[int]) -> Any:
    import pyarrow as pa
    import pyarrow.compute as pc

    wanted = pa.array(partitions, pa.int32())
    return events.filter(pc.is_in(events["kafka_partition"], value_set=wanted))
