"""Lake compaction against the real broker and a real `antenna-elt ingest lake` process:
killed with SIGKILL at each step of compacting a closed hour, the lake still holds every
event once for a reader at that moment, and the restarted ingestor finishes the job (one
file for the hour, nothing left behind). `antenna-elt lake compact` from the command line.
The DuckDB builds over a compacted lake: test_incremental.py."""

from __future__ import annotations

import os
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from conftest import run_cli
from helpers import all_offsets, end_offsets, kill9, produce, unique_group, wait_for
from lake_helpers import (
    HOUR_03,
    all_parquet_files,
    event,
    ingest_lake,
    lake_offsets,
    lake_process,
    leftovers,
    parquet_files,
)

from antenna_elt.settings import Settings
from antenna_elt.sinks.lake import layout as L
from antenna_elt.sinks.lake.compaction import STEPS
from antenna_elt.sinks.lake.manifests import HourManifests, is_compacted
from antenna_elt.sinks.lake.storage import Lake, LakeLocation

HOUR = 3600


def hour_03_traffic(settings: Settings, topic: str) -> None:
    """30 events an hour-03 minute on each of 3 partitions, then events 20 minutes into
    hour 04 on each: the watermark (close grace 0) closes hour 03."""
    produce(
        settings,
        topic,
        [(p, event(HOUR_03 + 60 * i + p, 100 * p + i)) for i in range(30) for p in range(3)],
    )
    produce(settings, topic, [(p, event(HOUR_03 + HOUR + 1200, 1)) for p in range(3)])


def manifest_03(lake: Path) -> dict | None:
    return HourManifests(Lake(LakeLocation.parse(str(lake)))).published(HOUR_03)


def folder_03(lake: Path) -> Path:
    return lake / L.hour_dir(L.EVENTS_TABLE, HOUR_03)


@pytest.mark.parametrize("step", STEPS)
def test_kill_9_at_each_step_of_compaction_leaves_every_event_once_and_a_restart_finishes_it(
    settings: Settings, kafka_topic: str, tmp_path: Path, step: str
) -> None:
    hour_03_traffic(settings, kafka_topic)
    lake, group, log = tmp_path / "lake", unique_group(), tmp_path / "ingest.log"
    args = ("--batch-size", "10", "--max-latency", "0.2", "--close-grace", "0")
    env = {**os.environ, "ANTENNA_ELT_COMPACT_FAILPOINT": step}
    if step == "deleted":
        env["ANTENNA_ELT_COMPACT_GRACE"] = "0"
    proc = lake_process(kafka_topic, str(lake), group, *args, log_path=log, env=env)
    try:
        wait_for(
            lambda: f"compaction stopped at step {step}" in log.read_text(),
            90,
            f"the ingestor to compact hour 03 and stop at step {step}",
        )
    finally:
        kill9(proc)

    # a reader right after the kill: every offset once, whatever the step
    ends = end_offsets(settings, kafka_topic)
    assert sorted(lake_offsets(lake)) == all_offsets(ends)
    before = [p for p in all_parquet_files(lake) if p.parent == folder_03(lake)]
    assert len(before) > 3  # many small files (some may be compacted already)

    # restarted (with a grace of 0) and one more event, so that it commits: it finishes
    produce(settings, kafka_topic, [(0, event(HOUR_03 + HOUR + 1300, 2))])
    restart_env = {**os.environ, "ANTENNA_ELT_COMPACT_GRACE": "0"}
    final = lake_process(
        kafka_topic, str(lake), group, *args, "--until-caught-up", log_path=log, env=restart_env
    )
    assert final.wait(timeout=120) == 0, log.read_text()[-3000:]

    ends = end_offsets(settings, kafka_topic)
    assert sorted(lake_offsets(lake)) == all_offsets(ends)
    manifest = manifest_03(lake)
    assert manifest is not None
    [listed] = manifest["files"]
    assert is_compacted(listed["path"])
    assert listed["rows"] == manifest["rows"] == 90
    on_disk = [p for p in all_parquet_files(lake) if p.parent == folder_03(lake)]
    assert [str(p.relative_to(lake)) for p in on_disk] == [listed["path"]]
    assert pq.read_metadata(on_disk[0]).num_rows == 90
    assert leftovers(lake) == []


def test_lake_compact_from_the_command_line_dry_run_then_for_real(
    settings: Settings, kafka_topic: str, tmp_path: Path
) -> None:
    hour_03_traffic(settings, kafka_topic)
    lake = tmp_path / "lake"
    ingest_lake(
        settings,
        kafka_topic,
        str(lake),
        unique_group(),
        batch_size=10,
        close_grace=0,
        compact=False,
    )
    files = [p for p in parquet_files(lake) if p.parent == folder_03(lake)]
    assert len(files) >= 9  # at least 3 batches of each partition's hour 03

    dry = run_cli("lake", "compact", "--lake", str(lake), "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert dry.stdout.startswith(f"hour 2026-11-24T03: would compact {len(files)} files (")
    assert dry.stdout.rstrip().endswith("90 events) into 1")
    assert [p for p in parquet_files(lake) if p.parent == folder_03(lake)] == files

    open_hour = run_cli("lake", "compact", "--lake", str(lake), "--hour", "2026-11-24T04")
    assert open_hour.returncode == 1
    assert open_hour.stdout.strip() == (
        f"hour 2026-11-24T04 is not closed yet in {lake.as_uri()}: only closed hours are compacted"
    )

    done = run_cli("lake", "compact", "--lake", str(lake), "--hour", "2026-11-24T03")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"compacted hour 2026-11-24T03: {len(files)} files -> 1 (")
    [compacted] = [p for p in parquet_files(lake) if p.parent == folder_03(lake)]
    assert is_compacted(compacted.name)
    assert (
        len([p for p in all_parquet_files(lake) if p.parent == folder_03(lake)]) == len(files) + 1
    )
    # (the replaced files are kept for the grace period)
    assert manifest_03(lake)["version"] == 2  # type: ignore[index]

    collected = run_cli("lake", "compact", "--lake", str(lake), "--compact-grace", "0")
    assert collected.returncode == 0, collected.stderr
    assert collected.stdout.strip() == f"nothing to compact in {lake.as_uri()}"
    assert [p for p in all_parquet_files(lake) if p.parent == folder_03(lake)] == [compacted]
    ends = end_offsets(settings, kafka_topic)
    assert sorted(lake_offsets(lake)) == all_offsets(ends)
