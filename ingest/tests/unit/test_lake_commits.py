"""The lake's per-partition commit chain on a local temporary lake: commit, roll forward,
prune, recover; and the fencing that keeps writers of one group (zombies included) from
committing an offset twice or touching each other's files."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from antenna_elt.sinks.lake import layout as L
from antenna_elt.sinks.lake.commits import KEEP_COMMITS, CommitLog
from antenna_elt.sinks.lake.storage import Lake

HOUR_03 = 1_795_489_200  # 2026-11-24T03:00:00Z


@pytest.fixture
def lake(tmp_path: Path) -> Lake:
    from antenna_elt.sinks.lake.storage import LakeLocation

    return Lake(LakeLocation.parse(str(tmp_path)))


@pytest.fixture
def log(lake: Lake) -> CommitLog:
    return CommitLog(lake, "g", writer="w1")


def staged(log: CommitLog, first: int, last: int, partition: int = 0) -> dict[str, Any]:
    """A batch's file written under its temporary name for the record after the current
    head, and that record (not created yet)."""
    head, _ = log.head("devices", partition)
    number = log.next_number(head)
    tmp = log.tmp_name("devices", partition, number, 0)
    log.lake.write_file(tmp, b"parquet bytes %d" % first)
    path = f"{L.hour_dir(L.EVENTS_TABLE, HOUR_03)}/{L.file_name('devices', partition, first, last)}"
    files = [{"tmp": tmp, "path": path, "table": L.EVENTS_TABLE, "hour": HOUR_03, "rows": 1}]
    return {
        **log.chain_fields(head),
        "topic": "devices",
        "partition": partition,
        "first_offset": first,
        "next_offset": last + 1,
        "events": last + 1 - first,
        "rejects": 0,
        "files": files,
    }


def tmp_files(log: CommitLog, partition: int = 0) -> list[str]:
    return log.lake.list(log.tmp_dir("devices", partition))


def test_two_writers_building_on_the_same_head_commit_once(lake: Lake) -> None:
    one, two = CommitLog(lake, "g", writer="w1"), CommitLog(lake, "g", writer="w2")
    first, second = staged(one, 0, 9), staged(two, 0, 4)  # both read "no head"
    assert one.commit(first)
    assert not two.commit(second)  # the same record number: the other writer got there
    head, names = one.head("devices", 0)
    assert head == first and names == [f"c{1:020d}.json"]
    assert head["prev"] is None and head["writer"] == "w1"
    third = staged(two, 10, 19)
    assert two.commit(third)
    assert two.head("devices", 0)[0] == third and third["prev"] == first["id"]
    assert one.partitions("devices") == [0]


def test_roll_forward_gives_the_files_their_final_names_and_is_idempotent(
    log: CommitLog, tmp_path: Path
) -> None:
    record = staged(log, 0, 9)
    log.commit(record)
    final = record["files"][0]["path"]
    assert log.roll_forward(record) == {HOUR_03: {final}}
    assert log.roll_forward(record) == {HOUR_03: {final}}
    assert (tmp_path / final).read_bytes() == b"parquet bytes 0"
    assert tmp_files(log) == [] and log.rolled_forward(record)


def test_roll_forward_of_a_commit_whose_file_vanished_says_so(log: CommitLog) -> None:
    record = staged(log, 0, 9)
    log.lake.delete(record["files"][0]["tmp"])
    with pytest.raises(RuntimeError, match=r"lists .* which is missing"):
        log.roll_forward(record)


def test_prune_keeps_the_newest_records(log: CommitLog) -> None:
    for n in range(KEEP_COMMITS + 5):
        record = staged(log, n * 10, n * 10 + 9)
        _, older = log.head("devices", 0)
        assert log.commit(record)
        log.roll_forward(record)
        log.prune("devices", 0, older)
    head, names = log.head("devices", 0)
    assert len(names) == KEEP_COMMITS
    assert names[0] == f"c{6:020d}.json" and head is not None and head["first_offset"] == 240


def test_recover_rolls_the_head_forward_fences_and_deletes_what_nobody_can_commit(
    lake: Lake, tmp_path: Path
) -> None:
    crashed, newcomer = CommitLog(lake, "g", writer="w1"), CommitLog(lake, "g", writer="w2")
    committed = staged(crashed, 0, 9)
    crashed.commit(committed)  # the process died before renaming
    staged(crashed, 10, 19)  # and this batch never got its commit
    fence, head, hours = newcomer.recover("devices", 0)
    assert head == committed
    assert hours == {HOUR_03: {committed["files"][0]["path"]}}
    assert (tmp_path / committed["files"][0]["path"]).exists()
    assert tmp_files(crashed) == []
    assert (fence["number"], fence["prev"], fence["files"], fence["fence"]) == (
        2,
        committed["id"],
        [],
        True,
    )
    assert (fence["first_offset"], fence["next_offset"]) == (10, 10)


def test_recover_deletes_a_record_half_created_by_a_killed_writer(
    lake: Lake, tmp_path: Path
) -> None:
    """kill -9 between writing a record's bytes and linking them to its name leaves
    ``c<n>.json.<token>.partial`` (found by make test's kill -9 lake test)."""
    crashed, newcomer = CommitLog(lake, "g", writer="w1"), CommitLog(lake, "g", writer="w2")
    crashed.commit(staged(crashed, 0, 9))
    record = staged(crashed, 10, 19)
    commits = tmp_path / "_ingest" / "g" / "devices" / "0" / "commits"
    half = commits / "c00000000000000000002.json.0badf00d.partial"
    half.write_text(json.dumps(record))  # the writer died here
    fence, _, _ = newcomer.recover("devices", 0)
    assert fence["number"] == 2
    assert not half.exists()
    assert sorted(p.name for p in commits.iterdir()) == [
        "c00000000000000000001.json",
        "c00000000000000000002.json",
    ]


def test_a_record_whose_half_created_file_was_deleted_is_not_created(lake: Lake) -> None:
    """A stalled writer whose ``.partial`` a fencing writer deleted before the link: the
    record is not created (False), not an error."""
    from antenna_elt.sinks.lake import storage

    real_write = storage._write_local

    def write_then_lose(path: str, data: bytes) -> None:
        real_write(path, data)
        Path(path).unlink()  # what delete_uncommitted of a fencing writer does

    storage._write_local = write_then_lose  # type: ignore[assignment]
    try:
        assert lake.create("_ingest/g/devices/0/commits/c00000000000000000001.json", b"{}") is False
    finally:
        storage._write_local = real_write  # type: ignore[assignment]
    assert lake.read("_ingest/g/devices/0/commits/c00000000000000000001.json") is None


def test_a_zombie_cannot_commit_after_the_partition_was_fenced(lake: Lake, tmp_path: Path) -> None:
    zombie, owner = CommitLog(lake, "g", writer="zombie"), CommitLog(lake, "g", writer="owner")
    zombie.commit(staged(zombie, 0, 9))
    late = staged(zombie, 10, 19)  # read the head, wrote its file ... then stalled
    owner.recover("devices", 0)  # the partition moved: fenced, the zombie's file deleted
    assert not zombie.commit(late)
    ahead = staged(owner, 10, 24)  # the owner's next batch, not committed yet
    owner.recover("devices", 0)  # a second assignment must not touch files beyond its fence
    assert tmp_files(owner) == []  # ahead's number is taken by the new fence: it is stale
    assert not owner.commit(ahead)
    record = staged(owner, 10, 24)
    assert owner.commit(record)
    owner.roll_forward(record)
    finals = sorted(p.name for p in (tmp_path / "device_usage").rglob("*.parquet"))
    assert finals == [L.file_name("devices", 0, 0, 9), L.file_name("devices", 0, 10, 24)]


def test_recover_leaves_the_files_of_a_writer_that_already_read_the_fence(lake: Lake) -> None:
    one, two = CommitLog(lake, "g", writer="w1"), CommitLog(lake, "g", writer="w2")
    one.recover("devices", 0)
    pending = staged(one, 0, 9)  # written for the record after the fence
    two.delete_uncommitted("devices", 0, fence=1)  # what a recover of the same fence does
    assert tmp_files(one) == [Path(pending["files"][0]["tmp"]).name]
    assert one.commit(pending)


def test_a_writer_stalled_past_pruning_takes_its_commit_back(lake: Lake) -> None:
    stalled, busy = CommitLog(lake, "g", writer="stalled"), CommitLog(lake, "g", writer="busy")
    late = staged(stalled, 0, 9)  # read "no head", then stalled
    for n in range(KEEP_COMMITS + 3):  # meanwhile record 1 was committed and pruned
        record = staged(busy, n * 10, n * 10 + 9)
        _, older = busy.head("devices", 0)
        assert busy.commit(record)
        busy.roll_forward(record)
        busy.prune("devices", 0, older)
    assert not (
        Path(lake.location.root) / "_ingest/g/devices/0/commits" / f"c{1:020d}.json"
    ).exists()
    assert not stalled.commit(late)  # created number 1 again, saw the chain moved on
    head, names = busy.head("devices", 0)
    assert head is not None and head["writer"] == "busy" and len(names) == KEEP_COMMITS


def test_a_commit_another_writer_already_built_on_stays(lake: Lake) -> None:
    one, two = CommitLog(lake, "g", writer="w1"), CommitLog(lake, "g", writer="w2")
    record = staged(one, 0, 9)
    assert one.commit(record)
    two.recover("devices", 0)  # builds on it at once: rolls it forward, fences
    newer = staged(two, 10, 19)
    assert two.commit(newer)
    assert (
        json.loads(
            (
                Path(lake.location.root) / "_ingest/g/devices/0/commits" / f"c{1:020d}.json"
            ).read_text()
        )["id"]
        == record["id"]
    )


def test_recover_of_a_partition_never_written_fences_it_with_no_offset(log: CommitLog) -> None:
    fence, head, hours = log.recover("devices", 7)
    assert (fence["number"], fence["next_offset"], head, hours) == (1, None, None, {})


def test_a_lake_of_format_1_records_continues_its_chain_from_the_newest(
    log: CommitLog, lake: Lake
) -> None:
    old = {"format": 1, "topic": "devices", "partition": 0, "first_offset": 100,
           "next_offset": 200, "events": 100, "rejects": 0, "files": []}  # fmt: skip
    lake.create(f"_ingest/g/devices/0/commits/{100:020d}.json", json.dumps(old).encode())
    lake.write_file(log.tmp_dir("devices", 0) + "/a1b2c3d4-0000.tmp", b"uncommitted")
    fence, head, _ = log.recover("devices", 0)
    assert head is not None and head["first_offset"] == 100
    assert (fence["number"], fence["prev"], fence["next_offset"]) == (
        1,
        f"format1:{100:020d}.json",
        200,
    )
    assert tmp_files(log) == []  # a format 1 temporary file: its writer is gone
