"""Closing event hours on a watermark, with an injected clock.

The watermark is the smallest, over the partitions that committed recently, of the
largest event time committed, minus ``close_grace``. An hour whose end is at or before
the watermark is closed: it gets ``_manifests/closed_hours/device_usage/<hour>.json``
listing its files and rows. A late event after that adds a file and rewrites the
manifest (version + 1). Hours being written are marked open first, so a crash cannot
forget one. A partition with no commit for ``idle_partition_seconds`` stops holding the
watermark back.
"""

from __future__ import annotations

import logging
from typing import Any

from antenna_elt.clock import SYSTEM_CLOCK, Clock
from antenna_elt.sinks.lake import layout as L
from antenna_elt.sinks.lake.commits import CommitLog, Record
from antenna_elt.sinks.lake.parquet import row_count
from antenna_elt.sinks.lake.storage import Lake

log = logging.getLogger("antenna_elt.ingest.lake")

IDLE_PARTITION_SECONDS = 600.0
"""A partition with no commit for this long stops holding the watermark back."""


class HourCloser:
    def __init__(
        self,
        lake: Lake,
        commits: CommitLog,
        *,
        close_grace: float = 600.0,
        idle_partition_seconds: float = IDLE_PARTITION_SECONDS,
        clock: Clock = SYSTEM_CLOCK,
    ):
        self.lake = lake
        self.commits = commits
        self.close_grace = close_grace
        self.idle_partition_seconds = idle_partition_seconds
        self.clock = clock
        # partition -> (largest event time committed, when committed)
        self._marks: dict[int, tuple[int | None, float]] | None = None
        # hour start -> "open" | "closed"; open hours are also marked in the lake
        self._hours: dict[int, str] | None = None
        self.file_rows: dict[str, int] = {}
        """Rows of the files this process wrote or read (saves reading footers)."""

    # -- open and closed hours --------------------------------------------------------------

    def _load_hours(self) -> dict[int, str]:
        if self._hours is None:
            self._hours = {}
            for name in self.lake.list(L.OPEN_HOURS):
                if name.endswith(".json"):
                    self._hours[L.parse_hour(name.removesuffix(".json"))] = "open"
        return self._hours

    def state(self, hour: int) -> str | None:
        """``open``, ``closed`` or None (never written)."""
        hours = self._load_hours()
        if hour not in hours and self.lake.exists(L.closed_manifest(hour)):
            hours[hour] = "closed"
        return hours.get(hour)

    def mark_open(self, hours: set[int]) -> set[int]:
        """Record a batch's hours as open before committing it (so that a crash cannot
        forget an hour); returns the hours already closed (late events)."""
        late: set[int] = set()
        for hour in sorted(hours):
            state = self.state(hour)
            if state == "closed":
                late.add(hour)
            elif state is None:
                self.lake.write_json(L.open_marker(hour), {"hour": L.hour_label(hour)})
                self._load_hours()[hour] = "open"
        return late

    def refresh_closed(self, event_hours: dict[int, set[str]]) -> None:
        """After recovering a commit: add its files to the manifests of closed hours."""
        for hour, paths in sorted(event_hours.items()):
            if self.state(hour) != "closed":
                continue
            manifest = self.lake.read_json(L.closed_manifest(hour)) or {}
            if paths - {m["path"] for m in manifest.get("files", [])}:
                self.write_manifest(hour)

    def note_files(self, record: Record) -> None:
        for f in record["files"]:
            self.file_rows[f["path"]] = int(f["rows"])

    # -- the watermark ----------------------------------------------------------------------

    def _mark_of(self, head: Record) -> tuple[int | None, float]:
        return head.get("max_event_time"), float(head.get("committed_epoch", 0.0))

    def _load_marks(self, topic: str) -> dict[int, tuple[int | None, float]]:
        if self._marks is None:
            self._marks = {}
            for partition in self.commits.partitions(topic):
                head, _ = self.commits.head(topic, partition)
                if head is not None:
                    self._marks[partition] = self._mark_of(head)
        return self._marks

    def committed(self, topic: str, partition: int, max_event_time: int | None, at: float) -> None:
        """A partition committed a batch whose events reach ``max_event_time``."""
        self._load_marks(topic)[partition] = (max_event_time, at)

    def watermark(self, topic: str) -> int | None:
        """Event time up to which every recently active partition is complete."""
        marks = self._load_marks(topic)
        now = self.clock.time()
        for partition, (_, committed) in list(marks.items()):
            if now - committed > self.idle_partition_seconds:
                # maybe another process writes it: look again before calling it idle
                head, _ = self.commits.head(topic, partition)
                if head is not None:
                    marks[partition] = self._mark_of(head)
        active = [
            t
            for t, committed in marks.values()
            if t is not None and now - committed <= self.idle_partition_seconds
        ]
        if not active:
            return None
        return int(min(active) - self.close_grace)

    def close_hours(self, topic: str) -> None:
        """Close every open hour whose end the watermark has passed."""
        mark = self.watermark(topic)
        if mark is None:
            return
        hours = self._load_hours()
        for hour in sorted(h for h, s in hours.items() if s == "open" and h + L.HOUR <= mark):
            manifest = self.write_manifest(hour, watermark=mark)
            self.lake.delete(L.open_marker(hour))
            hours[hour] = "closed"
            log.info(
                "closed hour %s: %d files, %d events (watermark %s)",
                L.hour_label(hour),
                len(manifest["files"]),
                manifest["rows"],
                L.hour_label(mark - mark % L.HOUR),
            )

    # -- manifests --------------------------------------------------------------------------

    def write_manifest(self, hour: int, watermark: int | None = None) -> dict[str, Any]:
        """List the hour's files with their row counts into its closed-hour manifest."""
        folder = L.hour_dir(L.EVENTS_TABLE, hour)
        files: list[dict[str, Any]] = []
        for name in self.lake.list(folder):
            if not name.endswith(".parquet"):
                continue
            path = f"{folder}/{name}"
            rows = self.file_rows.get(path)
            if rows is None:
                with self.lake.open_input(path) as handle:
                    rows = row_count(handle)
                self.file_rows[path] = rows
            files.append({"path": path, "rows": rows, "bytes": self.lake.size(path)})
        previous = self.lake.read_json(L.closed_manifest(hour)) or {}
        now = L.utc_now_text()
        manifest = {
            "table": L.EVENTS_TABLE,
            "hour": L.hour_label(hour),
            "hour_start": L.utc_text(hour),
            "hour_end": L.utc_text(hour + L.HOUR),
            "lake": self.lake.location.uri,
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
