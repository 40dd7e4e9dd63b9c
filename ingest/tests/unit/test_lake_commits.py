"""The lake's per-partition commit log on a local temporary lake: create, roll forward,
prune, recover."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from antenna_elt.sinks.lake import layout as L
from antenna_elt.sinks.lake.commits import KEEP_COMMITS, CommitLog
from antenna_elt.sinks.lake.storage import Lake, LakeLocation

HOUR_03 = 1_795_489_200  # 2026-11-24T03:00:00Z


@pytest.fixture
def log(tmp_path: Path) -> CommitLog:
    return CommitLog(Lake(LakeLocation.parse(str(tmp_path))), "g")


def staged(log: CommitLog, first: int, last: int, partition: int = 0) -> dict[str, Any]:
    """A batch's file written under its temporary name, and its commit record."""
    tmp = f"{log.tmp_dir('devices', partition)}/t{first}.tmp"
    log.lake.write_file(tmp, b"parquet bytes")
    path = f"{L.hour_dir(L.EVENTS_TABLE, HOUR_03)}/{L.file_name('devices', partition, first, last)}"
    files = [{"tmp": tmp, "path": path, "table": L.EVENTS_TABLE, "hour": HOUR_03, "rows": 1}]
    return {
        "topic": "devices",
        "partition": partition,
        "first_offset": first,
        "next_offset": last + 1,
        "events": last + 1 - first,
        "rejects": 0,
        "files": files,
    }


def test_a_commit_is_created_once_per_first_offset(log: CommitLog) -> None:
    record = staged(log, 0, 9)
    assert log.create(record)
    assert not log.create(staged(log, 0, 4))  # another writer got there first
    head, names = log.head("devices", 0)
    assert head == record and names == [f"{0:020d}.json"]
    assert log.partitions("devices") == [0]


def test_roll_forward_gives_the_files_their_final_names_and_is_idempotent(
    log: CommitLog, tmp_path: Path
) -> None:
    record = staged(log, 0, 9)
    log.create(record)
    final = record["files"][0]["path"]
    assert log.roll_forward(record) == {HOUR_03: {final}}
    assert log.roll_forward(record) == {HOUR_03: {final}}
    assert (tmp_path / final).read_bytes() == b"parquet bytes"
    assert log.lake.list(log.tmp_dir("devices", 0)) == []


def test_roll_forward_of_a_commit_whose_file_vanished_says_so(log: CommitLog) -> None:
    record = staged(log, 0, 9)
    log.lake.delete(record["files"][0]["tmp"])
    with pytest.raises(RuntimeError, match=r"lists .* which is missing"):
        log.roll_forward(record)


def test_prune_keeps_the_newest_records(log: CommitLog) -> None:
    for n in range(KEEP_COMMITS + 5):
        _, older = log.head("devices", 0)
        log.create(staged(log, n * 10, n * 10 + 9))
        log.prune("devices", 0, older)
    head, names = log.head("devices", 0)
    assert len(names) == KEEP_COMMITS
    assert names[0] == f"{50:020d}.json" and head is not None and head["first_offset"] == 240


def test_recover_rolls_the_newest_commit_forward_and_deletes_uncommitted_files(
    log: CommitLog, tmp_path: Path
) -> None:
    committed = staged(log, 0, 9)
    log.create(committed)  # the process died before renaming
    staged(log, 10, 19)  # and this batch never got its commit
    head, hours = log.recover("devices", 0)
    assert head == committed
    assert hours == {HOUR_03: {committed["files"][0]["path"]}}
    assert (tmp_path / committed["files"][0]["path"]).exists()
    assert log.lake.list(log.tmp_dir("devices", 0)) == []


def test_recover_of_a_partition_never_written_finds_nothing(log: CommitLog) -> None:
    assert log.recover("devices", 7) == (None, {})
