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
from antenna_elt.sinks.lake.manifests import HourManifests, live_paths
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
        self.manifests = HourManifests(lake)
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
        if hour not in hours and self.manifests.current(hour) is not None:
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
            manifest = self.manifests.current(hour) or {}
            known = {m["path"] for m in manifest.get("files", [])} | set(
                manifest.get("replaced", [])
            )
            if paths - known:
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

    def close_hours(self, topic: str) -> list[int]:
        """Close every open hour whose end the watermark has passed; returns them."""
        mark = self.watermark(topic)
        if mark is None:
            return []
        hours = self._load_hours()
        closing = sorted(h for h, s in hours.items() if s == "open" and h + L.HOUR <= mark)
        for hour in closing:
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
        return closing

    # -- manifests --------------------------------------------------------------------------

    def write_manifest(self, hour: int, watermark: int | None = None) -> dict[str, Any]:
        """List the hour's live files with their row counts in a new version of its
        closed-hour manifest (:mod:`.manifests`): the files it listed, plus files the
        ingestor committed since (late events) that compaction has not replaced."""
        folder = L.hour_dir(L.EVENTS_TABLE, hour)
        names = self.lake.list(folder)

        def change(previous: dict[str, Any] | None) -> dict[str, Any]:
            previous = previous or {}
            listed = {f["path"]: f for f in previous.get("files", [])}
            files = list(listed.values())
            for path in live_paths(previous, folder, names):
                if path not in listed:
                    files.append(self._describe(path))
            now = L.utc_now_text()
            return {
                **previous,
                "table": L.EVENTS_TABLE,
                "hour": L.hour_label(hour),
                "hour_start": L.utc_text(hour),
                "hour_end": L.utc_text(hour + L.HOUR),
                "lake": self.lake.location.uri,
                "files": files,
                "rows": sum(int(f["rows"]) for f in files),
                "closed_at": previous.get("closed_at", now),
                "updated_at": now,
                "watermark": L.utc_text(watermark)
                if watermark is not None
                else previous.get("watermark"),
            }

        manifest = self.manifests.update(hour, change)
        assert manifest is not None
        return manifest

    def _describe(self, path: str) -> dict[str, Any]:
        rows = self.file_rows.get(path)
        if rows is None:
            with self.lake.open_input(path) as handle:
                rows = row_count(handle)
            self.file_rows[path] = rows
        return {"path": path, "rows": rows, "bytes": self.lake.size(path)}
