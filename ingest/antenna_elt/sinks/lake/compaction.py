"""Compaction of closed hours: an hour's small files rewritten into as few files as the
size target allows, atomically for every reader, exactly once across crashes.

Steps for one hour (:meth:`Compactor.compact`), each safe to die after:

1. read the hour's newest manifest (version ``v``) and list its folder; the live files
   (:func:`.manifests.live_paths`) smaller than half the target are the inputs, packed
   in order into bins of at most ``target_bytes``; nothing to do under two inputs;
2. delete compacted files left by an attempt that died before committing (versions up to
   ``v`` that ``v`` does not list: that version is taken, so they can never be committed);
3. stream each bin into ``compacted-v<v+1>-<writer>-<n>.parquet`` (row groups of
   ``row_group_rows``), written whole under a temporary name, then renamed: not listed, so
   no reader reads it yet;
4. check the outputs hold as many rows as the inputs, and create version ``v + 1`` of the
   manifest listing the outputs instead of the inputs, the inputs under ``replaced`` and
   ``retired`` (the commit point: created once; if another writer created ``v + 1`` first,
   late events or another compactor, the outputs are deleted and nothing changed);
5. publish it (readers now read the outputs; a crash before this is finished by the next
   writer of the hour, see :class:`.manifests.HourManifests`).

Retired files are deleted by :meth:`Compactor.collect_garbage` once ``grace`` seconds
have passed since their version was created, so that a build that registered the
previous list can still read them.
"""

from __future__ import annotations

import dataclasses
import logging
import time
import uuid
from collections.abc import Callable, Iterable
from typing import Any

from antenna_elt.clock import SYSTEM_CLOCK, Clock
from antenna_elt.sinks.lake import layout as L
from antenna_elt.sinks.lake.manifests import (
    HourManifests,
    Manifest,
    compacted_version,
    is_compacted,
    live_paths,
)
from antenna_elt.sinks.lake.parquet import ROW_GROUP_ROWS, event_schema
from antenna_elt.sinks.lake.storage import Lake

log = logging.getLogger("antenna_elt.ingest.lake")

TARGET_BYTES = 128 * 1024 * 1024
"""Default size of a compacted file."""
GRACE_SECONDS = 3600.0
"""Default time a replaced file is kept after its replacement was published."""
STEPS = ("planned", "written", "version-created", "committed", "deleted")
"""Where a failure can be injected: after planning, after each file written, after the
manifest version was created (not yet published), after it was published, after each
replaced file deleted."""

Step = Callable[[str], None]


def no_step(name: str) -> None:
    pass


def stop_at(failpoint: str | None) -> Step:
    """A step hook that stops for ever at step ``failpoint`` (ANTENNA_ELT_COMPACT_FAILPOINT:
    tests kill -9 the process there); no hook without one."""
    if not failpoint:
        return no_step
    if failpoint not in STEPS:
        raise ValueError(
            f"ANTENNA_ELT_COMPACT_FAILPOINT={failpoint!r}: use one of {', '.join(STEPS)}"
        )

    def step(name: str) -> None:
        if name == failpoint:
            log.warning("compaction stopped at step %s (ANTENNA_ELT_COMPACT_FAILPOINT)", name)
            while True:
                time.sleep(3600)

    return step


@dataclasses.dataclass
class Compaction:
    """What compacting an hour did (or, dry, would do)."""

    hour: int
    inputs: list[dict[str, Any]]
    outputs: list[dict[str, Any]]
    bins: list[list[dict[str, Any]]]
    seconds: float = 0.0
    committed: bool = False
    conflict: bool = False

    @property
    def label(self) -> str:
        return L.hour_label(self.hour)

    def line(self, *, dry_run: bool = False) -> str:
        before = sum(int(f["bytes"]) for f in self.inputs)
        rows = sum(int(f["rows"]) for f in self.inputs)
        if dry_run:
            return (
                f"hour {self.label}: would compact {len(self.inputs)} files "
                f"({_mib(before)}, {rows} events) into {len(self.bins)}"
            )
        if self.conflict:
            return (
                f"hour {self.label}: not compacted, its manifest changed meanwhile (late "
                "events); the next run compacts it"
            )
        after = sum(int(f["bytes"]) for f in self.outputs)
        return (
            f"compacted hour {self.label}: {len(self.inputs)} files -> {len(self.outputs)} "
            f"({_mib(before)} -> {_mib(after)}, {rows} events) in {self.seconds:.2f} s"
        )


def _mib(n: int) -> str:
    return f"{n / 1024 / 1024:.2f} MiB"


class Compactor:
    """Compact closed hours of one lake and delete the files they replaced after a grace."""

    def __init__(
        self,
        lake: Lake,
        *,
        target_bytes: int = TARGET_BYTES,
        row_group_rows: int = ROW_GROUP_ROWS,
        compression: str = "zstd",
        grace: float = GRACE_SECONDS,
        clock: Clock = SYSTEM_CLOCK,
        step: Step = no_step,
    ):
        self.lake = lake
        self.target_bytes = target_bytes
        self.row_group_rows = row_group_rows
        self.compression = compression
        self.grace = grace
        self.clock = clock
        self.step = step
        self.manifests = HourManifests(lake, step=step)
        self.writer = uuid.uuid4().hex[:8]

    # -- planning ---------------------------------------------------------------------------

    def plan(self, hour: int) -> tuple[Manifest | None, Compaction | None]:
        """The hour's newest manifest and what compacting it would do (None: nothing)."""
        manifest = self.manifests.current(hour)
        if manifest is None:
            return None, None  # not closed: its files may still grow
        folder = L.hour_dir(L.EVENTS_TABLE, hour)
        listed = {f["path"]: f for f in manifest.get("files", [])}
        inputs = []
        for path in live_paths(manifest, folder, self.lake.list(folder)):
            described = listed.get(path) or self._describe(path)
            if int(described["bytes"]) < self.target_bytes // 2:
                inputs.append({k: described[k] for k in ("path", "rows", "bytes")})
        if len(inputs) < 2:
            return manifest, None
        # the ingestor's files sort by topic, partition, first offset; compacted ones first
        inputs.sort(key=lambda f: (not is_compacted(f["path"]), f["path"]))
        bins: list[list[dict[str, Any]]] = [[]]
        size = 0
        for f in inputs:
            if bins[-1] and size + int(f["bytes"]) > self.target_bytes:
                bins.append([])
                size = 0
            bins[-1].append(f)
            size += int(f["bytes"])
        return manifest, Compaction(hour=hour, inputs=inputs, outputs=[], bins=bins)

    def _describe(self, path: str) -> dict[str, Any]:
        import pyarrow.parquet as pq

        with self.lake.open_input(path) as handle:
            rows = int(pq.read_metadata(handle).num_rows)
        return {"path": path, "rows": rows, "bytes": self.lake.size(path)}

    # -- compacting -------------------------------------------------------------------------

    def compact(self, hour: int, *, dry_run: bool = False) -> Compaction | None:
        """Compact one closed hour (module text); None when there is nothing to do."""
        started = time.monotonic()
        manifest, plan = self.plan(hour)
        if manifest is not None and not dry_run:
            self._delete_orphans(hour, manifest)
        if plan is None or manifest is None or dry_run:
            return plan
        self.step("planned")
        version = int(manifest.get("version", 0)) + 1
        folder = L.hour_dir(L.EVENTS_TABLE, hour)
        for n, group in enumerate(plan.bins):
            path = f"{folder}/compacted-v{version:09d}-{self.writer}-{n:04d}.parquet"
            rows = self._rewrite([f["path"] for f in group], path)
            expected = sum(int(f["rows"]) for f in group)
            if rows != expected:
                self.lake.delete(path)
                raise RuntimeError(
                    f"compacting hour {plan.label}: {path} holds {rows} rows, its inputs "
                    f"{expected}; nothing was changed"
                )
            plan.outputs.append(
                {
                    "path": path,
                    "rows": rows,
                    "bytes": self.lake.size(path),
                    "inputs": [f["path"] for f in group],
                }
            )
            self.step("written")

        inputs = {f["path"] for f in plan.inputs}
        now = self.clock.time()

        def change(current: Manifest | None) -> Manifest | None:
            if current is None or int(current.get("version", 0)) != version - 1:
                return None  # late events or another compactor changed the hour first
            files = [f for f in current.get("files", []) if f["path"] not in inputs]
            files += plan.outputs
            replaced = set(current.get("replaced", [])) | {p for p in inputs if not is_compacted(p)}
            retired = list(current.get("retired", [])) + [
                {"path": p, "version": version, "epoch": now} for p in sorted(inputs)
            ]
            return {
                **current,
                "files": files,
                "rows": sum(int(f["rows"]) for f in files),
                "replaced": sorted(replaced),
                "retired": retired,
                "updated_at": L.utc_now_text(),
                "compacted_at": L.utc_now_text(),
            }

        committed = self.manifests.update(hour, change)
        if committed is None:
            for f in plan.outputs:
                self.lake.delete(f["path"])
            plan.conflict = True
        else:
            plan.committed = True
            self.step("committed")
            self._delete_orphans(hour, committed)
        plan.seconds = time.monotonic() - started
        log.info("%s", plan.line())
        return plan

    def _rewrite(self, inputs: list[str], path: str) -> int:
        """Stream ``inputs`` into one Parquet file at ``path`` with row groups of
        ``row_group_rows``; returns its rows. Memory: about one row group."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        schema = event_schema()
        rows = 0
        with (
            self.lake.writing(path) as local,
            pq.ParquetWriter(
                local, schema, compression=self.compression, write_statistics=True
            ) as out,
        ):
            pending: list[Any] = []
            pending_rows = 0
            for rel in inputs:
                with self.lake.open_input(rel) as handle:
                    source = pq.ParquetFile(handle)
                    for batch in source.iter_batches(batch_size=self.row_group_rows):
                        pending.append(batch.cast(schema))
                        pending_rows += batch.num_rows
                        while pending_rows >= self.row_group_rows:
                            table = pa.Table.from_batches(pending, schema=schema)
                            head = table.slice(0, self.row_group_rows)
                            out.write_table(head, row_group_size=self.row_group_rows)
                            rows += head.num_rows
                            rest = table.slice(self.row_group_rows)
                            pending = rest.to_batches()
                            pending_rows = rest.num_rows
            if pending_rows:
                out.write_table(
                    pa.Table.from_batches(pending, schema=schema),
                    row_group_size=self.row_group_rows,
                )
                rows += pending_rows
        return rows

    def _delete_orphans(self, hour: int, manifest: Manifest) -> None:
        """Compacted files (whole or ``.partial``) of a version up to the manifest's that
        it does not list: an attempt that died (or lost its race) before its version was
        created; that version is taken, so they can never be listed, and no reader ever
        read them."""
        folder = L.hour_dir(L.EVENTS_TABLE, hour)
        listed = {f["path"] for f in manifest.get("files", [])}
        retired = {r["path"] for r in manifest.get("retired", [])}
        version = int(manifest.get("version", 0))
        for name in self.lake.list(folder):
            path = f"{folder}/{name}"
            number = compacted_version(name)
            if number is None or path in listed or path in retired or number > version:
                continue
            log.info("deleting %s, written by a compaction that did not commit", path)
            self.lake.delete(path)

    # -- garbage ----------------------------------------------------------------------------

    def collect_garbage(self, hour: int) -> tuple[list[str], float | None]:
        """Delete the files the hour's versions retired more than ``grace`` seconds ago;
        returns their paths and when the next retired file is due (None: none)."""
        current = self.manifests.current(hour)
        if current is None or not current.get("retired"):
            return [], None
        self._delete_orphans(hour, current)
        self.manifests.publish(hour, current)  # readers must read what retired them
        now = self.clock.time()
        deleted = []
        later = []
        for entry in current["retired"]:
            due = float(entry["epoch"]) + self.grace
            if now < due:
                later.append(due)
            elif self.lake.exists(entry["path"]):
                self.lake.delete(entry["path"])
                deleted.append(entry["path"])
                self.step("deleted")
        if deleted:
            log.info(
                "hour %s: deleted %d files replaced by compaction more than %.0f s ago",
                L.hour_label(hour),
                len(deleted),
                self.grace,
            )
        return deleted, min(later) if later else None

    # -- everything -------------------------------------------------------------------------

    def run(self, hours: Iterable[int] | None = None, *, dry_run: bool = False) -> list[Compaction]:
        """Compact the given closed hours (default: every closed hour) and collect their
        garbage."""
        done = []
        for hour in sorted(self.manifests.closed_hours() if hours is None else hours):
            result = self.compact(hour, dry_run=dry_run)
            if result is not None:
                done.append(result)
            if not dry_run:
                self.collect_garbage(hour)
        return done


class AutoCompactor:
    """Compaction inside the lake ingestor: after a commit that closed hours or added late
    events to closed hours, compact those hours; delete replaced files when their grace
    has passed. The first call also looks at every closed hour (what a process killed
    while compacting left). A failure is logged and retried at the next commit: the
    batch itself is already committed."""

    def __init__(self, compactor: Compactor):
        self.compactor = compactor
        self._scanned = False
        self._garbage: dict[int, float] = {}
        """hour -> when its next retired file may be deleted"""

    def after_commit(self, hours: list[int]) -> None:
        todo = set(hours)
        if not self._scanned:
            todo |= set(self.compactor.manifests.closed_hours())
        try:
            for hour in sorted(todo):
                self.compactor.compact(hour)
                self._garbage[hour] = 0.0  # look once
            self._scanned = True
            now = self.compactor.clock.time()
            for hour, due in sorted(self._garbage.items()):
                if due <= now:
                    _, later = self.compactor.collect_garbage(hour)
                    if later is None:
                        del self._garbage[hour]
                    else:
                        self._garbage[hour] = later
        except Exception as exc:
            log.warning(
                "compaction failed (%s: %s); readers still read every event once, and the "
                "next commit tries again",
                type(exc).__name__,
                str(exc).splitlines()[0] if str(exc) else "",
            )
