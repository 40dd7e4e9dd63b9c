"""Closed-hour manifests: versioned, each version created once, and the rule that says
which of an hour's files are live.

A closed hour's manifest lists its live files. Writers (the hour closer, late events,
compaction) never overwrite a version: version ``n`` is created exclusively as
``_manifests/versions/device_usage/<hour>/v<n:09d>.json`` (the commit point; two writers
racing for the same ``n``: one wins, the other reads again), then published as
``_manifests/closed_hours/device_usage/<hour>.json``, the file readers read whole.

Which files of an hour are live (what a reader must read, no more, no less):

- every file the manifest lists under ``files``;
- every file the ingestor named (``<topic>+<partition>+<first>+<last>.parquet``) that the
  manifest does not list under ``replaced``: an hour without a manifest (still open), or
  late events committed before the manifest was rewritten.

Compacted files (``compacted-v<version>-<writer>-<n>.parquet``) are live only while listed. So
compaction writes its files first (nobody reads them: not listed), then publishes the
version that lists them and names the files they replace, in one write: a reader of one
manifest sees the old files or the new ones, never both, never neither. The files a
version retired stay ``retired`` (with the version and time) until the grace period has
passed, so that a build that read the previous version can still read them.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any

from antenna_elt.sinks.lake import layout as L
from antenna_elt.sinks.lake.storage import Lake

log = logging.getLogger("antenna_elt.ingest.lake")

Manifest = dict[str, Any]

COMPACTED_PREFIX = "compacted-"
KEEP_VERSIONS = 10
"""Version files kept an hour (readers read the published copy; older ones are deleted)."""
UPDATE_ATTEMPTS = 100


def versions_dir(hour: int) -> str:
    return f"{L.VERSIONS}/{L.hour_label(hour)}"


def version_path(hour: int, version: int) -> str:
    return f"{versions_dir(hour)}/v{version:09d}.json"


def _version_number(name: str) -> int | None:
    if len(name) == 15 and name.startswith("v") and name.endswith(".json") and name[1:10].isdigit():
        return int(name[1:10])
    return None


def _partial_version(name: str) -> int | None:
    """The version a writer was creating when it died (``v<n>.json.<token>.partial``: the
    storage writes a version there, then links it to its name)."""
    if name.endswith(".partial"):
        return _version_number(name[:15])
    return None


def is_compacted(path: str) -> bool:
    return path.rsplit("/", 1)[-1].startswith(COMPACTED_PREFIX)


def compacted_version(path: str) -> int | None:
    """The manifest version a compacted file was written for."""
    name = path.rsplit("/", 1)[-1]
    if is_compacted(name) and name[len(COMPACTED_PREFIX)] == "v":
        digits = name[len(COMPACTED_PREFIX) + 1 : len(COMPACTED_PREFIX) + 10]
        if digits.isdigit():
            return int(digits)
    return None


def live_paths(manifest: Manifest | None, folder: str, names: list[str]) -> list[str]:
    """The live files of an hour whose folder holds ``names`` (module text), sorted."""
    listed = {f["path"] for f in (manifest or {}).get("files", [])}
    replaced = set((manifest or {}).get("replaced", []))
    live = set()
    for name in names:
        if not name.endswith(".parquet"):
            continue
        path = f"{folder}/{name}"
        if path in listed or (not is_compacted(name) and path not in replaced):
            live.add(path)
    return sorted(live)


class HourManifests:
    """Read and update the closed-hour manifests of one lake."""

    def __init__(self, lake: Lake, step: Callable[[str], None] | None = None):
        self.lake = lake
        self.step = step
        """Called with ``version-created`` between creating and publishing (tests)."""

    def published(self, hour: int) -> Manifest | None:
        return self.lake.read_json(L.closed_manifest(hour))

    def current(self, hour: int) -> Manifest | None:
        """The newest version (a writer killed between creating a version and publishing
        it leaves the published copy one behind)."""
        published = self.published(hour)
        listed = self.lake.list(versions_dir(hour))
        names = [n for n in listed if _version_number(n)]
        if names:
            newest = _version_number(names[-1]) or 0
            self._delete_half_created(hour, listed, newest)
            if published is None or int(published.get("version", 0)) < newest:
                found = self.lake.read_json(f"{versions_dir(hour)}/{names[-1]}")
                if found is not None:
                    return found
        return published

    def closed_hours(self) -> list[int]:
        hours = {
            L.parse_hour(n.removesuffix(".json"))
            for n in self.lake.list(L.CLOSED_HOURS)
            if n.endswith(".json")
        }
        hours |= {L.parse_hour(n) for n in self.lake.list(L.VERSIONS) if "." not in n}
        return sorted(hours)

    def update(
        self, hour: int, change: Callable[[Manifest | None], Manifest | None]
    ) -> Manifest | None:
        """Create the next version from ``change(current)`` and publish it; None if
        ``change`` returns None (nothing to do). ``change`` is called again when another
        writer created that version first."""
        for _ in range(UPDATE_ATTEMPTS):
            current = self.current(hour)
            if current is not None:
                self.publish(hour, current)  # finish a writer that died before publishing
            new = change(current)
            if new is None:
                return None
            version = int((current or {}).get("version", 0)) + 1
            new = {**new, "version": version}
            self.lake.ensure_dir(versions_dir(hour))
            if self.lake.create(version_path(hour, version), json.dumps(new, indent=1).encode()):
                if self.step is not None:
                    self.step("version-created")
                self.publish(hour, new)
                self._prune(hour, version)
                return new
        raise RuntimeError(
            f"could not update the manifest of hour {L.hour_label(hour)} in "
            f"{UPDATE_ATTEMPTS} attempts: other writers keep updating it"
        )

    def publish(self, hour: int, manifest: Manifest) -> None:
        """Make ``manifest`` the one readers read, unless a newer one already is."""
        published = self.published(hour)
        if published is not None and int(published.get("version", 0)) >= int(manifest["version"]):
            return
        self.lake.ensure_dir(L.CLOSED_HOURS)
        self.lake.write_json(L.closed_manifest(hour), manifest)

    def _prune(self, hour: int, version: int) -> None:
        """Delete the versions older than the last KEEP_VERSIONS, and what writers killed
        while creating a version left (numbers up to ``version`` are taken: such a file can
        never become a version; a live writer whose file goes is told it lost)."""
        listed = self.lake.list(versions_dir(hour))
        for name in listed:
            number = _version_number(name)
            if number is not None and number <= version - KEEP_VERSIONS:
                self.lake.delete(f"{versions_dir(hour)}/{name}")
        self._delete_half_created(hour, listed, version)

    def _delete_half_created(self, hour: int, names: list[str], taken: int) -> None:
        """Delete the half-created versions among ``names`` whose numbers are taken (up to
        ``taken``): they can never be linked to their name."""
        for name in names:
            partial = _partial_version(name)
            if partial is not None and partial <= taken:
                log.info("deleting half-created manifest version %s/%s", versions_dir(hour), name)
                self.lake.delete(f"{versions_dir(hour)}/{name}")


def was_replaced(lake: Lake, hour: int, path: str) -> bool:
    """Whether compaction replaced ``path`` (so it may be gone from the lake for good)."""
    manifest = HourManifests(lake).current(hour)
    return path in set((manifest or {}).get("replaced", []))
