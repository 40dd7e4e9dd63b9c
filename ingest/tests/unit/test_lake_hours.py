"""The lake's hour closer with a fake clock: which hours close on the watermark, when an
idle partition stops holding it back, and what a manifest lists."""

from __future__ import annotations

from pathlib import Path

import pytest
from fakes import FakeClock

from antenna_elt.sinks.lake import layout as L
from antenna_elt.sinks.lake.commits import CommitLog
from antenna_elt.sinks.lake.hours import HourCloser
from antenna_elt.sinks.lake.storage import Lake, LakeLocation

H03 = 1_795_489_200  # 2026-11-24T03:00:00Z
H04, H05, MINUTE = H03 + 3600, H03 + 7200, 60


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def closer(tmp_path: Path, clock: FakeClock) -> HourCloser:
    lake = Lake(LakeLocation.parse(str(tmp_path)))
    return HourCloser(lake, CommitLog(lake, "g"), close_grace=600, clock=clock)


def file_in(closer: HourCloser, hour: int, name: str, rows: int) -> str:
    path = f"{L.hour_dir(L.EVENTS_TABLE, hour)}/{name}.parquet"
    closer.lake.write_file(path, b"x" * rows)
    closer.file_rows[path] = rows
    return path


def closed(closer: HourCloser) -> list[str]:
    return [n.removesuffix(".json") for n in closer.lake.list(L.CLOSED_HOURS)]


def test_hours_close_exactly_when_the_slowest_partition_passes_their_end_plus_grace(
    closer: HourCloser, clock: FakeClock
) -> None:
    assert closer.mark_open({H03, H04, H05}) == set()
    closer.committed("devices", 0, H05 + 15 * MINUTE, clock.time())
    closer.committed("devices", 1, H04 + 10 * MINUTE, clock.time())
    assert closer.watermark("devices") == H04  # 04:10 minus 10 minutes of grace
    closer.close_hours("devices")
    assert closed(closer) == ["2026-11-24T03"]
    closer.committed("devices", 1, H05 + 9 * MINUTE, clock.time())
    closer.close_hours("devices")
    assert closed(closer) == ["2026-11-24T03"]  # 05:09 - 10 min = 04:59: hour 04 not yet
    closer.committed("devices", 1, H05 + 10 * MINUTE, clock.time())
    closer.close_hours("devices")
    assert closed(closer) == ["2026-11-24T03", "2026-11-24T04"]
    assert closer.state(H05) == "open"


def test_an_idle_partition_stops_holding_the_watermark_back(
    closer: HourCloser, clock: FakeClock
) -> None:
    closer.mark_open({H03, H04})
    closer.committed("devices", 0, H03 + 20 * MINUTE, clock.time())  # then silent
    clock.advance(300)
    closer.committed("devices", 1, H05 + 15 * MINUTE, clock.time())
    closer.close_hours("devices")
    assert closed(closer) == []
    clock.advance(300)  # partition 0 silent for exactly 600 s: still active
    closer.close_hours("devices")
    assert closed(closer) == []
    clock.advance(1)
    assert closer.watermark("devices") == H05 + 5 * MINUTE
    closer.close_hours("devices")
    assert closed(closer) == ["2026-11-24T03", "2026-11-24T04"]


def test_no_watermark_before_any_commit(closer: HourCloser) -> None:
    assert closer.watermark("devices") is None


def test_a_manifest_lists_the_hours_files_and_late_events_rewrite_it(
    closer: HourCloser, clock: FakeClock
) -> None:
    first = file_in(closer, H03, "a", 5)
    closer.mark_open({H03})
    closer.committed("devices", 0, H04 + 10 * MINUTE, clock.time())
    closer.close_hours("devices")
    manifest = closer.lake.read_json(L.closed_manifest(H03))
    assert manifest is not None
    assert (manifest["files"], manifest["rows"], manifest["version"]) == (
        [{"path": first, "rows": 5, "bytes": 5}],
        5,
        1,
    )
    assert manifest["watermark"] == "2026-11-24T04:00:00Z"
    assert not closer.lake.exists(L.open_marker(H03))

    late = file_in(closer, H03, "b", 2)
    assert closer.mark_open({H03}) == {H03}  # a late event for a closed hour
    closer.refresh_closed({H03: {late}})
    manifest = closer.lake.read_json(L.closed_manifest(H03))
    assert manifest is not None
    assert [f["path"] for f in manifest["files"]] == [first, late]
    assert (manifest["rows"], manifest["version"]) == (7, 2)


def test_a_manifest_replacement_left_by_a_killed_writer_is_swept(tmp_path: Path) -> None:
    """A writer killed between writing an hour's manifest under its temporary name and the
    rename leaves `<hour>.json.w<pid>-<token>.partial`. The next write into that folder, and
    the sink's recovery, delete it once its process is gone (or after an hour); a live
    writer's is left alone."""
    import os
    import subprocess
    import sys
    import time

    from antenna_elt.sinks.lake.sink import LakeSink

    lake = Lake(LakeLocation.parse(str(tmp_path)))
    folder = tmp_path / L.CLOSED_HOURS
    folder.mkdir(parents=True)
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)  # fmt: skip
    dead = f"2026-11-24T03.json.w{int(gone.stdout)}-52eacee1.partial"
    live = f"2026-11-24T04.json.w{os.getppid()}-0badcafe.partial"
    stale = f"2026-11-24T05.json.w{os.getppid()}-0ddba11e.partial"
    for name in (dead, live, stale):
        (folder / name).write_text("{")
    two_hours_ago = time.time() - 7200
    os.utime(folder / stale, (two_hours_ago, two_hours_ago))
    lake.write_json(L.closed_manifest(L.parse_hour("2026-11-24T06")), {"version": 1})
    assert sorted(p.name for p in folder.iterdir()) == sorted([live, "2026-11-24T06.json"])

    (folder / dead).write_text("{")  # killed again; the restarted sink recovers
    LakeSink(tmp_path.as_uri(), "g").stored_offsets("devices", [])
    assert sorted(p.name for p in folder.iterdir()) == sorted([live, "2026-11-24T06.json"])
