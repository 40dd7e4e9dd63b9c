"""Compaction of closed lake hours on a local lake with a fake clock: what it rewrites,
what readers see at every moment (the manifest's rule of live files), a failure injected
at each step, the grace period, late events and concurrent writers."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
from fakes import FakeClock

from antenna_elt.sinks.lake import layout as L
from antenna_elt.sinks.lake import parquet
from antenna_elt.sinks.lake.commits import CommitLog
from antenna_elt.sinks.lake.compaction import STEPS, AutoCompactor, Compactor
from antenna_elt.sinks.lake.hours import HourCloser
from antenna_elt.sinks.lake.manifests import HourManifests, is_compacted, live_paths
from antenna_elt.sinks.lake.storage import Lake, LakeLocation

H03 = 1_795_489_200  # 2026-11-24T03:00:00Z
FOLDER = L.hour_dir(L.EVENTS_TABLE, H03)
DEVICE = "00000000-0000-0000-0000-000000000001"
ANTENNA = "10000000-0000-0000-0000-000000000001"


class Crash(Exception):
    """Stands for kill -9 at a step."""


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def lake(tmp_path: Path) -> Lake:
    return Lake(LakeLocation.parse(str(tmp_path)))


def closer_for(lake: Lake, clock: FakeClock) -> HourCloser:
    return HourCloser(lake, CommitLog(lake, "g"), clock=clock)


def add_file(lake: Lake, partition: int, first: int, count: int, hour: int = H03) -> str:
    """An ingestor file of ``count`` events at offsets first.. of ``partition``."""
    rows = [
        (hour + (first + i) % 3600, DEVICE, ANTENNA, 100 + first + i, "SKYPE", partition, first + i)
        for i in range(count)
    ]
    ((_, _, table),) = parquet.event_tables("devices", rows, 1_000_000)
    path = f"{L.hour_dir(L.EVENTS_TABLE, hour)}/{L.file_name('devices', partition, first, first + count - 1)}"
    lake.write(path, parquet.encode(table, compression="zstd", row_group_rows=1000))
    return path


def closed_hour(lake: Lake, clock: FakeClock, files: int = 4, rows: int = 250) -> list[str]:
    paths = [add_file(lake, p % 2, (p // 2) * rows, rows) for p in range(files)]
    closer_for(lake, clock).write_manifest(H03, watermark=H03 + 3600)
    return paths


def compactor(lake: Lake, clock: FakeClock, **kwargs: Any) -> Compactor:
    return Compactor(lake, clock=clock, **{"row_group_rows": 1000, "grace": 3600, **kwargs})


def read_offsets(lake: Lake, paths: list[str]) -> Counter[tuple[int, int]]:
    found: Counter[tuple[int, int]] = Counter()
    for path in paths:
        table = pq.read_table(f"{lake.location.root}/{path}")
        found.update(
            zip(
                table.column("kafka_partition").to_pylist(),
                table.column("kafka_offset").to_pylist(),
                strict=True,
            )
        )
    return found


def seen_by_readers(lake: Lake, *, newest: bool = False) -> Counter[tuple[int, int]]:
    """The events a reader reads now: the live files of the published manifest (what DuckDB's
    registration and the BigQuery loader read), or of the newest version."""
    manifests = HourManifests(lake)
    manifest = manifests.current(H03) if newest else manifests.published(H03)
    return read_offsets(lake, live_paths(manifest, FOLDER, lake.list(FOLDER)))


def expected(files: int = 4, rows: int = 250) -> Counter[tuple[int, int]]:
    return Counter((p % 2, (p // 2) * rows + i) for p in range(files) for i in range(rows))


def parquet_names(lake: Lake) -> list[str]:
    return [n for n in lake.list(FOLDER) if n.endswith(".parquet")]


def test_a_closed_hours_files_become_one_file_listed_by_the_next_manifest_version(
    lake: Lake, clock: FakeClock
) -> None:
    originals = closed_hour(lake, clock)
    result = compactor(lake, clock).compact(H03)
    assert result is not None and result.committed
    manifest = HourManifests(lake).published(H03)
    assert manifest is not None
    assert manifest["version"] == 2
    assert [is_compacted(f["path"]) for f in manifest["files"]] == [True]
    assert manifest["files"][0]["inputs"] == sorted(originals)
    assert manifest["rows"] == 1000
    assert manifest["replaced"] == sorted(originals)
    assert live_paths(manifest, FOLDER, lake.list(FOLDER)) == [manifest["files"][0]["path"]]
    assert seen_by_readers(lake) == expected()
    # the replaced files stay for the grace period
    assert len(parquet_names(lake)) == 5


def test_compacted_row_groups_hold_row_group_rows(lake: Lake, clock: FakeClock) -> None:
    closed_hour(lake, clock, files=10, rows=250)
    result = compactor(lake, clock, row_group_rows=1000).compact(H03)
    assert result is not None
    metadata = pq.read_metadata(f"{lake.location.root}/{result.outputs[0]['path']}")
    assert [metadata.row_group(i).num_rows for i in range(metadata.num_row_groups)] == [
        1000,
        1000,
        500,
    ]


def test_the_size_target_packs_files_into_as_few_files_as_it_allows(
    lake: Lake, clock: FakeClock
) -> None:
    paths = closed_hour(lake, clock, files=6)
    size = lake.size(paths[0])
    result = compactor(lake, clock, target_bytes=int(size * 2.5)).compact(H03)
    assert result is not None
    assert [len(b) for b in result.bins] == [2, 2, 2]
    assert len(result.outputs) == 3
    assert seen_by_readers(lake) == expected(files=6)


def test_open_hours_and_hours_of_one_file_are_left_alone(lake: Lake, clock: FakeClock) -> None:
    add_file(lake, 0, 0, 10)
    add_file(lake, 1, 0, 10)
    assert compactor(lake, clock).compact(H03) is None  # not closed
    closer_for(lake, clock).write_manifest(H03)
    assert compactor(lake, clock).compact(H03) is not None
    assert compactor(lake, clock).compact(H03) is None  # one file now


def test_a_dry_run_says_what_it_would_do_and_changes_nothing(lake: Lake, clock: FakeClock) -> None:
    closed_hour(lake, clock)
    before = sorted(lake.list(FOLDER))
    result = compactor(lake, clock).compact(H03, dry_run=True)
    assert result is not None
    assert result.line(dry_run=True) == (
        f"hour 2026-11-24T03: would compact 4 files ({result.line(dry_run=True).split('(')[1].split(',')[0]}, "
        "1000 events) into 1"
    )
    assert sorted(lake.list(FOLDER)) == before
    assert HourManifests(lake).published(H03)["version"] == 1  # type: ignore[index]


@pytest.mark.parametrize("step", [s for s in STEPS if s != "deleted"])
def test_a_crash_at_any_step_leaves_every_event_exactly_once_and_the_next_run_finishes(
    lake: Lake, clock: FakeClock, step: str
) -> None:
    closed_hour(lake, clock)

    def crash(name: str) -> None:
        if name == step:
            raise Crash(name)

    with pytest.raises(Crash):
        compactor(lake, clock, step=crash).compact(H03)
    # readers at this moment: every event once, from the old files or from the new one
    assert seen_by_readers(lake) == expected()
    assert seen_by_readers(lake, newest=True) == expected()

    again = compactor(lake, clock)
    again.compact(H03)
    clock.advance(3601)
    again.collect_garbage(H03)
    assert seen_by_readers(lake) == expected()
    names = parquet_names(lake)
    assert len(names) == 1 and is_compacted(names[0])
    assert not [n for n in lake.list(FOLDER) if n.endswith(".partial")]
    manifest = HourManifests(lake).published(H03)
    assert manifest is not None and [f["path"] for f in manifest["files"]] == [
        f"{FOLDER}/{names[0]}"
    ]


def test_a_crash_while_deleting_replaced_files_is_finished_by_the_next_collection(
    lake: Lake, clock: FakeClock
) -> None:
    closed_hour(lake, clock)
    compactor(lake, clock).compact(H03)
    clock.advance(3601)

    def crash(name: str) -> None:
        if name == "deleted":
            raise Crash(name)

    with pytest.raises(Crash):
        compactor(lake, clock, step=crash).collect_garbage(H03)
    assert seen_by_readers(lake) == expected()
    deleted, later = compactor(lake, clock).collect_garbage(H03)
    assert len(deleted) == 3 and later is None
    assert len(parquet_names(lake)) == 1


def test_replaced_files_are_deleted_only_once_the_grace_period_has_passed(
    lake: Lake, clock: FakeClock
) -> None:
    originals = closed_hour(lake, clock)
    c = compactor(lake, clock, grace=600)
    c.compact(H03)
    clock.advance(599)
    assert c.collect_garbage(H03) == ([], clock.time() + 1)
    assert all(lake.exists(p) for p in originals)
    clock.advance(1)
    assert c.collect_garbage(H03)[0] == sorted(originals)
    assert not any(lake.exists(p) for p in originals)
    assert seen_by_readers(lake) == expected()


def test_late_events_after_compaction_are_read_at_once_and_compacted_again(
    lake: Lake, clock: FakeClock
) -> None:
    closed_hour(lake, clock)
    compactor(lake, clock).compact(H03)
    late = add_file(lake, 0, 5000, 7)  # committed by the ingestor, manifest not yet rewritten
    want = expected() + Counter((0, 5000 + i) for i in range(7))
    assert seen_by_readers(lake) == want
    manifest = closer_for(lake, clock).write_manifest(H03)  # the late events' manifest
    assert manifest["version"] == 3 and manifest["rows"] == 1007
    assert late in [f["path"] for f in manifest["files"]]
    assert len(manifest["files"]) == 2  # the compacted file and the late one, not the replaced
    assert seen_by_readers(lake) == want
    result = compactor(lake, clock).compact(H03)
    assert result is not None and result.committed and len(result.inputs) == 2
    assert seen_by_readers(lake) == want
    clock.advance(3601)
    compactor(lake, clock).collect_garbage(H03)
    assert len(parquet_names(lake)) == 1
    assert seen_by_readers(lake) == want


def test_late_events_committed_during_a_compaction_make_it_give_way(
    lake: Lake, clock: FakeClock
) -> None:
    closed_hour(lake, clock)

    def late_events(name: str) -> None:
        if name == "written":
            add_file(lake, 1, 9000, 3)
            closer_for(lake, clock).write_manifest(H03)

    result = compactor(lake, clock, step=late_events).compact(H03)
    assert result is not None and result.conflict and not result.committed
    want = expected() + Counter((1, 9000 + i) for i in range(3))
    assert seen_by_readers(lake) == want
    assert not [n for n in parquet_names(lake) if is_compacted(n)]  # its file was deleted
    assert compactor(lake, clock).compact(H03) is not None
    assert seen_by_readers(lake) == want


def test_two_compactors_of_one_hour_commit_once(lake: Lake, clock: FakeClock) -> None:
    closed_hour(lake, clock)
    second = compactor(lake, clock)

    def race(name: str) -> None:
        if name == "written":
            second.compact(H03)

    first = compactor(lake, clock, step=race).compact(H03)
    assert first is not None and first.conflict
    assert seen_by_readers(lake) == expected()
    assert len([n for n in parquet_names(lake) if is_compacted(n)]) == 1


def test_rolling_a_commit_forward_again_after_compaction_deleted_its_files_succeeds(
    lake: Lake, clock: FakeClock
) -> None:
    """A quiet partition's newest commit record still names files of an hour compaction
    replaced and deleted; recovery rolls that record forward on every assignment."""
    closed_hour(lake, clock)
    path = f"{FOLDER}/{L.file_name('devices', 0, 0, 249)}"
    record = {
        "topic": "devices",
        "partition": 0,
        "first_offset": 0,
        "files": [
            {
                "tmp": "_ingest/g/devices/0/tmp/gone.tmp",
                "path": path,
                "table": L.EVENTS_TABLE,
                "hour": H03,
            }
        ],
    }
    c = compactor(lake, clock)
    c.compact(H03)
    clock.advance(3601)
    c.collect_garbage(H03)
    assert not lake.exists(path)
    assert CommitLog(lake, "g").roll_forward(record) == {H03: {path}}


def test_the_ingestor_compacts_the_hours_it_closes_and_collects_their_garbage_later(
    lake: Lake, clock: FakeClock
) -> None:
    closed_hour(lake, clock)
    auto = AutoCompactor(compactor(lake, clock, grace=60))
    auto.after_commit([H03])
    assert len(parquet_names(lake)) == 5
    clock.advance(61)
    auto.after_commit([])
    assert len(parquet_names(lake)) == 1
    assert seen_by_readers(lake) == expected()


def test_after_a_restart_the_ingestor_finishes_what_a_killed_compaction_left(
    lake: Lake, clock: FakeClock
) -> None:
    closed_hour(lake, clock)

    def crash(name: str) -> None:
        if name == "version-created":
            raise Crash(name)

    with pytest.raises(Crash):
        compactor(lake, clock, step=crash).compact(H03)
    assert HourManifests(lake).published(H03)["version"] == 1  # type: ignore[index]
    AutoCompactor(compactor(lake, clock)).after_commit([])  # first commit after restart
    assert HourManifests(lake).published(H03)["version"] == 2  # type: ignore[index]
    assert seen_by_readers(lake) == expected()


def test_a_manifest_version_half_created_by_a_killed_writer_is_deleted(lake: Lake) -> None:
    """A writer killed between writing a manifest version and linking it to its name leaves
    ``v<n>.json.<token>.partial``: the next version created for that hour deletes it (its
    number is taken, it can never become a version), so no reader or lister trips on it."""
    manifests = HourManifests(lake)
    manifests.update(H03, lambda current: {"files": [], "replaced": []})
    folder = f"{L.VERSIONS}/{L.hour_label(H03)}"
    lake.write(f"{folder}/v000000002.json.0badf00d.partial", b'{"version": 2}')
    lake.write(f"{folder}/v000000009.json.0badf00d.partial", b'{"version": 9}')
    manifests.update(H03, lambda current: {"files": [], "replaced": []})
    names = sorted(lake.list(folder))
    # version 2 exists now: its half-created file goes; a later number may still be linked
    assert names == ["v000000001.json", "v000000002.json", "v000000009.json.0badf00d.partial"]


def test_reading_an_hours_manifest_deletes_what_a_killed_writer_half_created(lake: Lake) -> None:
    """The hour may never change again after the writer died (no late event, nothing to
    compact): reading its newest version (every start does, for every closed hour) deletes
    the half-created files of numbers already taken."""
    manifests = HourManifests(lake)
    manifests.update(H03, lambda current: {"files": [], "replaced": []})
    folder = f"{L.VERSIONS}/{L.hour_label(H03)}"
    lake.write(f"{folder}/v000000001.json.0badf00d.partial", b'{"version": 1}')
    assert manifests.current(H03)["version"] == 1  # type: ignore[index]
    assert sorted(lake.list(folder)) == ["v000000001.json"]
