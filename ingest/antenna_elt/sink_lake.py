"""Lake sink: every loop batch becomes Parquet files plus one commit record a partition.

One batch = one commit. For each Kafka partition in the batch the sink writes one file
per event hour (rows in offset order) and one rejects file, under temporary names that
readers never glob; then it creates the partition's commit record
``_ingest/<group>/<topic>/<partition>/commits/<first offset>.json`` (exclusive create:
the commit point, listing the files and the next offset); then it renames the files to
their final, deterministic names ``<topic>+<partition>+<first>+<last>.parquet``. On
assignment (:meth:`stored_offsets`) it rolls the newest commit forward (renames whatever
was not renamed yet) and deletes every uncommitted temporary file. So a crash at any
point leaves no partial file, loses nothing and duplicates nothing; a replay rewrites
the same names. Files are never rewritten: late events add a file to their hour.

Hours close on an event-time watermark: the smallest, over the partitions that committed
recently, of the largest event time committed, minus ``close_grace``. A closed hour gets
``_manifests/closed_hours/device_usage/<YYYY-MM-DDTHH>.json`` listing its files and rows;
a late event after that adds a file and rewrites the manifest.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import functools
import json
import logging
import time
import uuid
from collections import defaultdict
from collections.abc import Iterable, Iterator
from typing import Any

from antenna_elt import lake as L
from antenna_elt.consume import Batch, RejectRow, Row, SinkUnavailable, StaleBatch
from antenna_elt.errors import UserError

log = logging.getLogger("antenna_elt.ingest.lake")

KEEP_COMMITS = 20
"""Commit records kept a partition (older ones are deleted; only the newest is read)."""
IDLE_PARTITION_SECONDS = 600.0
"""A partition with no commit for this long stops holding the watermark back."""
HOUR = 3600


def event_schema() -> Any:
    import pyarrow as pa

    utc = pa.timestamp("us", tz="UTC")
    return pa.schema(
        [
            pa.field("event_time", utc, nullable=False),
            pa.field("id", pa.string(), nullable=False),
            pa.field("antenna_id", pa.string(), nullable=False),
            pa.field("bytes", pa.int64(), nullable=False),
            pa.field("app", pa.string(), nullable=False),
            pa.field("kafka_topic", pa.string(), nullable=False),
            pa.field("kafka_partition", pa.int32(), nullable=False),
            pa.field("kafka_offset", pa.int64(), nullable=False),
            pa.field("ingested_at", utc, nullable=False),
        ]
    )


def reject_schema() -> Any:
    import pyarrow as pa

    return pa.schema(
        [
            pa.field("kafka_topic", pa.string(), nullable=False),
            pa.field("kafka_partition", pa.int32(), nullable=False),
            pa.field("kafka_offset", pa.int64(), nullable=False),
            pa.field("raw_value", pa.binary()),
            pa.field("reason", pa.string(), nullable=False),
            pa.field("ingested_at", pa.timestamp("us", tz="UTC"), nullable=False),
        ]
    )


@dataclasses.dataclass
class _PendingFile:
    tmp: str
    path: str
    table: str
    hour: int
    rows: int


def _describe(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


class LakeSink:
    """Land batches as Parquet in ``<lake>/device_usage`` (+ rejects), exactly once."""

    def __init__(
        self,
        lake_uri: str,
        consumer_group: str,
        *,
        close_grace: float = 600.0,
        row_group_rows: int = 128 * 1024,
        compression: str = "zstd",
        idle_partition_seconds: float = IDLE_PARTITION_SECONDS,
    ):
        self.location = L.LakeLocation.parse(lake_uri)
        self.lake = L.Lake(self.location)
        self.group = consumer_group
        self.close_grace = close_grace
        self.row_group_rows = row_group_rows
        self.compression = compression
        self.idle_partition_seconds = idle_partition_seconds
        self.description = f"Parquet lake {self.location.uri}"
        # watermark state: partition -> (largest event time committed, when committed)
        self._marks: dict[int, tuple[int | None, float]] | None = None
        # hour start -> "open" | "closed"; open hours are also marked in the lake
        self._hours: dict[int, str] | None = None
        self._file_rows: dict[str, int] = {}

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
            for partition in partitions:
                head, _ = self._head(topic, partition)
                if head is not None:
                    self._roll_forward(head)
                    result[partition] = int(head["next_offset"])
                tmp_dir = f"{L.ingest_dir(self.group, topic, partition)}/tmp"
                for name in self.lake.list(tmp_dir):
                    log.info("deleting uncommitted file %s/%s", tmp_dir, name)
                    self.lake.delete(f"{tmp_dir}/{name}")
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
            if L.is_unavailable(exc):
                raise SinkUnavailable(f"{self.location.uri}: {_describe(exc)}") from exc
            raise

    def _write(self, batch: Batch) -> tuple[int, int]:
        topic = batch.topic
        rows, rejects = batch.split()
        now = time.time()
        todo: list[int] = []
        heads: dict[int, dict[str, Any] | None] = {}
        old_commits: dict[int, list[str]] = {}
        done_events = done_rejects = 0
        for partition in sorted(batch.first_offsets):
            first, nxt = batch.first_offsets[partition], batch.next_offsets[partition]
            head, names = self._head(topic, partition)
            heads[partition], old_commits[partition] = head, names
            if head is not None and head["first_offset"] == first and head["next_offset"] == nxt:
                # committed by an earlier attempt whose answer was lost: finish it
                self._roll_forward(head)
                done_events += int(head["events"])
                done_rejects += int(head["rejects"])
                continue
            if head is not None and int(head["next_offset"]) > first:
                raise StaleBatch(
                    f"partition {partition} is already stored up to offset "
                    f"{head['next_offset']} but this batch starts at {first}"
                )
            todo.append(partition)
        if len(todo) < len(batch.first_offsets):
            wanted = set(todo)
            rows = [r for r in rows if r[5] in wanted]
            rejects = [r for r in rejects if r[0] in wanted]

        ingested_us = int(now * 1_000_000)
        token = uuid.uuid4().hex[:8]
        files = self._write_event_files(topic, rows, ingested_us, token)
        for partition, staged in self._write_reject_files(
            topic, rejects, ingested_us, token
        ).items():
            files[partition].extend(staged)
        max_times = _max_event_times(rows)
        counts_events: dict[int, int] = defaultdict(int)
        counts_rejects: dict[int, int] = defaultdict(int)
        for row in rows:
            counts_events[row[5]] += 1
        for reject in rejects:
            counts_rejects[reject[0]] += 1

        hours_in_batch = {f.hour for fs in files.values() for f in fs if f.table == L.EVENTS_TABLE}
        late_hours = self._mark_hours_open(hours_in_batch)

        self._load_marks(topic)
        assert self._marks is not None
        for partition in todo:
            head = heads[partition]
            previous_max = head.get("max_event_time") if head else None
            candidates = [t for t in (previous_max, max_times.get(partition)) if t is not None]
            max_event_time = max(candidates) if candidates else None
            committed_epoch = time.time()
            record: dict[str, Any] = {
                "format": 1,
                "group": self.group,
                "topic": topic,
                "partition": partition,
                "first_offset": batch.first_offsets[partition],
                "next_offset": batch.next_offsets[partition],
                "events": counts_events[partition],
                "rejects": counts_rejects[partition],
                "max_event_time": max_event_time,
                "committed_at": L.utc_now_text(),
                "committed_epoch": committed_epoch,
                "files": [dataclasses.asdict(f) for f in files.get(partition, [])],
            }
            commit = (
                f"{L.ingest_dir(self.group, topic, partition)}/commits/"
                f"{batch.first_offsets[partition]:020d}.json"
            )
            self.lake.ensure_dir(commit.rsplit("/", 1)[0])
            if not self.lake.create(commit, json.dumps(record, indent=1).encode()):
                for f in files.get(partition, []):
                    self.lake.delete(f.tmp)
                raise StaleBatch(
                    f"partition {partition}: another writer committed offset "
                    f"{batch.first_offsets[partition]} first"
                )
            self._roll_forward(record, refresh_manifests=False)
            older = old_commits[partition]
            for name in older[: max(0, len(older) + 1 - KEEP_COMMITS)]:
                self.lake.delete(f"{L.ingest_dir(self.group, topic, partition)}/commits/{name}")
            self._marks[partition] = (max_event_time, committed_epoch)
            done_events += counts_events[partition]
            done_rejects += counts_rejects[partition]

        for hour in sorted(late_hours):
            log.info("late events for closed hour %s: manifest rewritten", L.hour_label(hour))
            self._write_manifest(hour)
        self._close_hours(topic)
        return done_events, done_rejects

    def _parquet_bytes(self, table: Any) -> bytes:
        import pyarrow as pa
        import pyarrow.parquet as pq

        out = pa.BufferOutputStream()
        pq.write_table(
            table,
            out,
            compression=self.compression,
            row_group_size=self.row_group_rows,
            write_statistics=True,
        )
        return bytes(out.getvalue().to_pybytes())

    def _write_event_files(
        self, topic: str, rows: list[Row], ingested_us: int, token: str
    ) -> dict[int, list[_PendingFile]]:
        """One file per (partition, event hour), rows in offset order."""
        import pyarrow as pa
        import pyarrow.compute as pc

        files: dict[int, list[_PendingFile]] = defaultdict(list)
        if not rows:
            return files
        ts, ids, antennas, nbytes, apps, partitions, offsets = zip(*rows, strict=True)
        utc = pa.timestamp("us", tz="UTC")
        ts_arr = pa.array(ts, pa.int64())
        part_arr = pa.array(partitions, pa.int32())
        hour_arr = pc.multiply(pc.divide(ts_arr, HOUR), HOUR)
        table = pa.Table.from_arrays(
            [
                pc.multiply(ts_arr, 1_000_000).cast(utc),
                pa.array(ids, pa.string()),
                pa.array(antennas, pa.string()),
                pa.array(nbytes, pa.int64()),
                pa.array(apps, pa.string()),
                pa.repeat(pa.scalar(topic, pa.string()), len(rows)),
                part_arr,
                pa.array(offsets, pa.int64()),
                pa.repeat(pa.scalar(ingested_us, utc), len(rows)),
            ],
            schema=event_schema(),
        )
        groups = (
            pa.table({"p": part_arr, "h": hour_arr}).group_by(["p", "h"]).aggregate([]).to_pylist()
        )
        single = len(groups) == 1
        for n, group in enumerate(sorted(groups, key=lambda g: (g["p"], g["h"]))):
            partition, hour = int(group["p"]), int(group["h"])
            if single:
                part = table
            else:
                mask = pc.and_(pc.equal(part_arr, partition), pc.equal(hour_arr, hour))
                part = table.filter(mask)
            offs = part.column("kafka_offset")
            first, last = offs[0].as_py(), offs[-1].as_py()
            path = (
                f"{L.hour_dir(L.EVENTS_TABLE, hour)}/{L.file_name(topic, partition, first, last)}"
            )
            files[partition].append(
                self._stage(topic, partition, token, n, path, L.EVENTS_TABLE, hour, part)
            )
        return files

    def _write_reject_files(
        self, topic: str, rejects: list[RejectRow], ingested_us: int, token: str
    ) -> dict[int, list[_PendingFile]]:
        """One rejects file a partition, in the hour of ingestion."""
        import pyarrow as pa

        files: dict[int, list[_PendingFile]] = defaultdict(list)
        by_partition: dict[int, list[RejectRow]] = defaultdict(list)
        for reject in rejects:
            by_partition[reject[0]].append(reject)
        hour = ingested_us // 1_000_000 // HOUR * HOUR
        for partition, items in sorted(by_partition.items()):
            n = len(items)
            table = pa.Table.from_arrays(
                [
                    pa.array([topic] * n, pa.string()),
                    pa.array([partition] * n, pa.int32()),
                    pa.array([r[1] for r in items], pa.int64()),
                    pa.array([r[2] for r in items], pa.binary()),
                    pa.array([r[3] for r in items], pa.string()),
                    pa.array([ingested_us] * n, pa.int64()).cast(pa.timestamp("us", tz="UTC")),
                ],
                schema=reject_schema(),
            )
            name = L.file_name(topic, partition, items[0][1], items[-1][1])
            path = f"{L.hour_dir(L.REJECTS_TABLE, hour)}/{name}"
            files[partition].append(
                self._stage(topic, partition, token, 1000, path, L.REJECTS_TABLE, hour, table)
            )
        return files

    def _stage(
        self,
        topic: str,
        partition: int,
        token: str,
        n: int,
        path: str,
        table_name: str,
        hour: int,
        table: Any,
    ) -> _PendingFile:
        tmp = f"{L.ingest_dir(self.group, topic, partition)}/tmp/{token}-{n:04d}.tmp"
        self.lake.write_file(tmp, self._parquet_bytes(table))
        self._file_rows[path] = table.num_rows
        return _PendingFile(tmp=tmp, path=path, table=table_name, hour=hour, rows=table.num_rows)

    # -- commits -----------------------------------------------------------------------------

    def _head(self, topic: str, partition: int) -> tuple[dict[str, Any] | None, list[str]]:
        """The newest commit record of a partition, and the names of all kept records."""
        commits = f"{L.ingest_dir(self.group, topic, partition)}/commits"
        names = [n for n in self.lake.list(commits) if n.endswith(".json")]
        if not names:
            return None, names
        record = self.lake.read_json(f"{commits}/{names[-1]}")
        return record, names

    def _roll_forward(self, record: dict[str, Any], *, refresh_manifests: bool = True) -> None:
        """Give every file of a commit its final name (idempotent); when recovering, also
        add late files to the manifest of their closed hour."""
        event_hours: dict[int, set[str]] = defaultdict(set)
        for f in record["files"]:
            try:
                self.lake.move(f["tmp"], f["path"])
            except FileNotFoundError:
                if not self.lake.exists(f["path"]):
                    raise RuntimeError(
                        f"commit of partition {record['partition']} at offset "
                        f"{record['first_offset']} lists {f['path']}, which is missing "
                        "(was the lake edited by hand?)"
                    ) from None
            self._file_rows[f["path"]] = int(f["rows"])
            if f["table"] == L.EVENTS_TABLE:
                event_hours[int(f["hour"])].add(f["path"])
        if not refresh_manifests:
            return
        for hour, paths in sorted(event_hours.items()):
            if self._hour_state(hour) != "closed":
                continue
            manifest = self.lake.read_json(L.closed_manifest(hour)) or {}
            if paths - {m["path"] for m in manifest.get("files", [])}:
                self._write_manifest(hour)

    # -- closing hours ---------------------------------------------------------------------

    def _load_hours(self) -> dict[int, str]:
        if self._hours is None:
            self._hours = {}
            for name in self.lake.list(L.OPEN_HOURS):
                if name.endswith(".json"):
                    self._hours[L.parse_hour(name.removesuffix(".json"))] = "open"
        return self._hours

    def _hour_state(self, hour: int) -> str | None:
        hours = self._load_hours()
        if hour not in hours and self.lake.exists(L.closed_manifest(hour)):
            hours[hour] = "closed"
        return hours.get(hour)

    def _mark_hours_open(self, hours: set[int]) -> set[int]:
        """Record the batch's hours as open before committing (so that a crash cannot
        forget an hour); returns the hours already closed (late events)."""
        late: set[int] = set()
        for hour in sorted(hours):
            state = self._hour_state(hour)
            if state == "closed":
                late.add(hour)
            elif state is None:
                self.lake.write_json(L.open_marker(hour), {"hour": L.hour_label(hour)})
                self._load_hours()[hour] = "open"
        return late

    def _load_marks(self, topic: str) -> None:
        if self._marks is not None:
            return
        self._marks = {}
        for name in self.lake.list(f"_ingest/{self.group}/{topic}"):
            if name.isdigit():
                head, _ = self._head(topic, int(name))
                if head is not None:
                    self._marks[int(name)] = (
                        head.get("max_event_time"),
                        float(head.get("committed_epoch", 0.0)),
                    )

    def watermark(self, topic: str) -> int | None:
        """Event time up to which every recently active partition is complete."""
        self._load_marks(topic)
        assert self._marks is not None
        now = time.time()
        for partition, (_, committed) in list(self._marks.items()):
            if now - committed > self.idle_partition_seconds:
                # maybe another process writes it: look again before calling it idle
                head, _ = self._head(topic, partition)
                if head is not None:
                    self._marks[partition] = (
                        head.get("max_event_time"),
                        float(head.get("committed_epoch", 0.0)),
                    )
        active = [
            t
            for t, committed in self._marks.values()
            if t is not None and now - committed <= self.idle_partition_seconds
        ]
        if not active:
            return None
        return int(min(active) - self.close_grace)

    def _close_hours(self, topic: str) -> None:
        mark = self.watermark(topic)
        if mark is None:
            return
        hours = self._load_hours()
        for hour in sorted(h for h, s in hours.items() if s == "open" and h + HOUR <= mark):
            manifest = self._write_manifest(hour, watermark=mark)
            self.lake.delete(L.open_marker(hour))
            hours[hour] = "closed"
            log.info(
                "closed hour %s: %d files, %d events (watermark %s)",
                L.hour_label(hour),
                len(manifest["files"]),
                manifest["rows"],
                L.hour_label(mark - mark % HOUR),
            )

    def _write_manifest(self, hour: int, watermark: int | None = None) -> dict[str, Any]:
        """List the hour's files with their row counts into its closed-hour manifest."""
        import pyarrow.parquet as pq

        folder = L.hour_dir(L.EVENTS_TABLE, hour)
        files: list[dict[str, Any]] = []
        for name in self.lake.list(folder):
            if not name.endswith(".parquet"):
                continue
            path = f"{folder}/{name}"
            rows = self._file_rows.get(path)
            if rows is None:
                with self.lake.open_input(path) as handle:
                    rows = int(pq.read_metadata(handle).num_rows)
                self._file_rows[path] = rows
            files.append({"path": path, "rows": rows, "bytes": self.lake.size(path)})
        previous = self.lake.read_json(L.closed_manifest(hour)) or {}
        now = L.utc_now_text()
        manifest = {
            "table": L.EVENTS_TABLE,
            "hour": L.hour_label(hour),
            "hour_start": L.utc_text(hour),
            "hour_end": L.utc_text(hour + HOUR),
            "lake": self.location.uri,
            "files": files,
            "rows": sum(f["rows"] for f in files),
            "closed_at": previous.get("closed_at", now),
            "updated_at": now,
            "version": int(previous.get("version", 0)) + 1,
            "watermark": L.utc_text(watermark)
            if watermark is not None
            else previous.get("watermark"),
        }
        self.lake.ensure_dir(L.CLOSED_HOURS)
        self.lake.write_json(L.closed_manifest(hour), manifest)
        return manifest


def _max_event_times(rows: list[Row]) -> dict[int, int]:
    result: dict[int, int] = {}
    for row in rows:
        ts, partition = row[0], row[5]
        if ts > result.get(partition, -1):
            result[partition] = ts
    return result


# -- command line ------------------------------------------------------------------------


def run(args: argparse.Namespace, settings: Any) -> int:
    from antenna_elt.consume import IngestLoop
    from antenna_elt.ingest_cli import loop_options

    lake_uri = args.lake or settings.lake_uri
    L.LakeLocation.parse(lake_uri)  # a bad URI is a one-line error before connecting
    sink = functools.partial(
        LakeSink,
        lake_uri,
        args.group,
        close_grace=args.close_grace,
        row_group_rows=args.row_group_rows,
    )
    options = dataclasses.replace(
        loop_options(args, settings), max_batch_bytes=args.max_batch_bytes
    )
    loop = IngestLoop(sink, options)
    loop.install_signal_handlers()
    loop.run()
    return 0


def register(sub: Any) -> None:
    """Add ``ingest lake`` to the ``ingest`` subcommands."""
    from antenna_elt.argtypes import non_negative, positive_int
    from antenna_elt.ingest_cli import add_loop_arguments

    p = sub.add_parser(
        "lake",
        help="land events as hourly Parquet files in the lake (file://, s3://, gs://), exactly once",
        description=(
            "Consume the topic with kafka-python and write Parquet under "
            "<lake>/device_usage/year=/month=/day=/hour=/ (event time, UTC), one file per "
            "partition and hour per batch, named <topic>+<partition>+<first>+<last>.parquet; "
            "contract breakers go to <lake>/device_usage_rejects/. Files are written under "
            "temporary names, committed with a per-partition commit record holding the next "
            "offset, then renamed: a crash at any point loses and duplicates nothing. A batch "
            "(so a file) closes at --batch-size messages, --max-batch-bytes or --max-latency "
            "seconds, also when no new events arrive. Hours whose events are complete get a "
            "manifest under <lake>/_manifests/closed_hours/device_usage/."
        ),
    )
    add_loop_arguments(p, group="antenna-elt-lake", batch_size=100_000, max_latency=60.0)
    p.add_argument(
        "--lake",
        help="lake location: a path or file://, s3://, gs:// URI (default: ANTENNA_ELT_LAKE or .stack/lake)",
    )
    p.add_argument(
        "--max-batch-bytes",
        type=positive_int,
        default=64 * 1024 * 1024,
        help=(
            "also write a batch when its messages add up to this many bytes of JSON "
            "(default: 64 MiB; the Parquet files are about 5 times smaller)"
        ),
    )
    p.add_argument(
        "--close-grace",
        type=non_negative,
        default=600.0,
        help=(
            "seconds of lateness allowed before an hour is closed: an hour closes when every "
            "active partition has seen events this long past its end (default: 600)"
        ),
    )
    p.add_argument(
        "--row-group-rows",
        type=positive_int,
        default=128 * 1024,
        help="rows per Parquet row group (default: 131072)",
    )
    p.set_defaults(func=run)
