"""The lake sink's write of one batch on a local lake with a fake clock: the batch is
validated a chunk at a time (issue 15: memory), yet every event lands once, in the file of
its (partition, event hour), in offset order, and each partition's commit record counts its
events and rejects and keeps its newest event time."""

from __future__ import annotations

import functools
import json
from collections import defaultdict
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from fakes import FakeClock

from antenna_elt.ingest.batch import Batch
from antenna_elt.ingest.writer import ProcessWriter
from antenna_elt.sinks.lake import layout as L
from antenna_elt.sinks.lake import sink as sink_module
from antenna_elt.sinks.lake.sink import LakeSink

H03 = 1_795_489_200  # 2026-11-24T03:00:00Z
DEVICE = "00000000-0000-0000-0000-000000000001"
ANTENNA = "10000000-0000-0000-0000-000000000001"


def event(ts: int, nbytes: int) -> bytes:
    return json.dumps(
        {"timestamp": ts, "id": DEVICE, "antenna_id": ANTENNA, "bytes": nbytes, "app": "SKYPE"}
    ).encode()


def mixed_batch() -> tuple[Batch, dict[tuple[int, int], list[int]], dict[int, int], dict[int, int]]:
    """100 messages over 3 partitions, interleaved: event hours jump back and forth (late
    events), every 9th message is not JSON. Returns the batch, the offsets expected in each
    (partition, hour) file in order, each partition's rejects and newest event time."""
    batch = Batch("devices", clock_time=H03 + 4 * 3600)
    files: dict[tuple[int, int], list[int]] = defaultdict(list)
    rejects: dict[int, int] = defaultdict(int)
    newest: dict[int, int] = {}
    offsets = {0: 500, 1: 0, 2: 70}
    for i in range(100):
        partition = (i * 7) % 3
        offset = offsets[partition]
        offsets[partition] += 1
        hour = H03 + 3600 * ((i * 5) % 3) - 3600  # 02:00, 03:00 and 04:00, out of order
        ts = hour + (i * 37) % 3600
        if i % 9 == 0:
            value = b'{"timestamp": oops'
            rejects[partition] += 1
        else:
            value = event(ts, i)
            files[(partition, hour)].append(offset)
            newest[partition] = max(newest.get(partition, 0), ts)
        batch.messages.append((partition, offset, value, (H03 + 4 * 3600) * 1000))
        batch.first_offsets.setdefault(partition, offset)
        batch.next_offsets[partition] = offset + 1
    return batch, dict(files), dict(rejects), newest


@pytest.mark.parametrize("chunk", [7, 8192])
def test_a_batch_validated_in_chunks_lands_each_event_once_in_its_hours_file_in_offset_order(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, chunk: int
) -> None:
    monkeypatch.setattr(sink_module, "VALIDATE_CHUNK", chunk)
    batch, expected_files, expected_rejects, newest = mixed_batch()
    sink = LakeSink(str(tmp_path), "g", compact=False, clock=FakeClock(wall=H03 + 4 * 3600))
    sink.setup()
    assert sink.stored_offsets("devices", [0, 1, 2]) == {}

    events = sum(map(len, expected_files.values()))
    assert sink.write(batch) == (events, sum(expected_rejects.values())) == (88, 12)

    found: dict[tuple[int, int], list[int]] = {}
    for path in sorted((tmp_path / L.EVENTS_TABLE).rglob("*.parquet")):
        table = pq.read_table(path)
        partitions = set(table.column("kafka_partition").to_pylist())
        hours = {int(t.timestamp()) // 3600 * 3600 for t in table.column("event_time").to_pylist()}
        assert len(partitions) == 1 and len(hours) == 1, path
        found[(partitions.pop(), hours.pop())] = table.column("kafka_offset").to_pylist()
    assert found == expected_files
    for partition in range(3):
        record, _ = sink.commits.head("devices", partition)
        assert record is not None
        assert record["first_offset"] == batch.first_offsets[partition]
        assert record["next_offset"] == batch.next_offsets[partition]
        assert record["events"] == sum(
            len(offsets) for (p, _), offsets in expected_files.items() if p == partition
        )
        assert record["rejects"] == expected_rejects.get(partition, 0)
        assert record["max_event_time"] == newest[partition]


def modules_and_arrow_threads() -> tuple[bool, int, str]:
    """Run in the writer process: is pandas or numpy imported, Arrow's CPU threads, its
    allocator."""
    import sys

    import pyarrow as pa

    return (
        "pandas" in sys.modules or "numpy" in sys.modules,
        pa.cpu_count(),
        pa.default_memory_pool().backend_name,
    )


def test_the_writer_process_writes_the_lake_without_pandas_on_one_arrow_thread(
    tmp_path: Path,
) -> None:
    """pyarrow would import pandas (37 MiB) on its first array and numpy (10 MiB) with
    itself; the writer refuses both, and the lake sink runs Arrow on one thread with the
    C allocator (issue 15: memory)."""
    batch, expected_files, _, _ = mixed_batch()
    writer = ProcessWriter(functools.partial(LakeSink, str(tmp_path), "g", compact=False))
    try:
        assert writer.submit(batch).result(timeout=60) == (88, 12)
        assert writer._pool.submit(modules_and_arrow_threads).result(timeout=60) == (
            False,
            1,
            "system",
        )
    finally:
        writer.shutdown()
    rows = sum(pq.read_metadata(p).num_rows for p in (tmp_path / L.EVENTS_TABLE).rglob("*.parquet"))
    assert rows == sum(map(len, expected_files.values()))


def test_a_batch_retried_after_one_partition_was_committed_writes_only_the_others(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A write whose answer was lost after partition 0 committed is retried whole: partition
    0 is counted from its commit record, the others are written, and every event is in the
    lake once."""
    monkeypatch.setattr(sink_module, "VALIDATE_CHUNK", 7)
    batch, expected_files, expected_rejects, _ = mixed_batch()
    sink = LakeSink(str(tmp_path), "g", compact=False, clock=FakeClock(wall=H03 + 4 * 3600))
    sink.setup()
    sink.stored_offsets("devices", [0, 1, 2])
    first = Batch("devices", clock_time=batch.clock_time)
    first.messages = [m for m in batch.messages if m[0] == 0]
    first.first_offsets = {0: batch.first_offsets[0]}
    first.next_offsets = {0: batch.next_offsets[0]}
    sink.write(first)

    assert sink.write(batch) == (88, 12)

    found: dict[tuple[int, int], list[int]] = defaultdict(list)
    for path in sorted((tmp_path / L.EVENTS_TABLE).rglob("*.parquet")):
        table = pq.read_table(path)
        for partition, moment, offset in zip(
            table.column("kafka_partition").to_pylist(),
            table.column("event_time").to_pylist(),
            table.column("kafka_offset").to_pylist(),
            strict=True,
        ):
            found[(partition, int(moment.timestamp()) // 3600 * 3600)].append(offset)
    assert {k: sorted(v) for k, v in found.items()} == expected_files
    assert sum(sink.commits.head("devices", p)[0]["rejects"] for p in range(3)) == sum(
        expected_rejects.values()
    )
