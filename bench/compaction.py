"""Benchmark: lake compaction. A lake of BENCH_COMPACT_EVENTS events (default 10,000,000)
over 24 closed hours, written the way the lake ingestor leaves it at ~116 events/s with its
default --max-latency of 60 s: one file per partition (3) per batch (60 an hour), so 180
small files an hour, named and listed in closed-hour manifests like the ingestor's. Then:

- a DuckDB scan of the uncompacted lake (count and sum of bytes over every event, a full
  aggregate by hour and antenna like the hourly marts', and one hour's events by a filter on
  event time), best of 3 each, 2 threads;
- `Compactor.run` over every closed hour (the code `antenna-elt lake compact` runs), its
  time, files per closed hour before and after, bytes before and after;
- the replaced files deleted (grace 0) and the same scans over the compacted lake.

Figures are ratios of the same run. `python -m bench.compaction` runs it alone.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
START = 1_767_225_600  # 2026-01-01T00:00:00Z
HOURS = 24
PARTITIONS = 3
BATCHES_PER_HOUR = 60

SUM_SCAN = """
select count(*) as events, sum(bytes) as total from read_parquet('{glob}')
"""
FULL_SCAN = """
select date_trunc('hour', event_time) as hour_start, antenna_id, count(*) as events, sum(bytes) as total
from read_parquet('{glob}')
group by 1, 2
"""
ONE_HOUR = """
select app, count(*) as events, sum(bytes) as total
from read_parquet('{glob}')
where event_time >= to_timestamp({start}) and event_time < to_timestamp({start} + 3600)
group by 1
"""


def write_lake(lake: Path, events: int) -> None:
    """The ingestor's layout: per hour, per batch, one file per partition, rows in offset
    order; every hour closed with a manifest."""
    import numpy as np
    import pyarrow as pa

    from antenna_elt.sinks.lake import layout as L
    from antenna_elt.sinks.lake import parquet
    from antenna_elt.sinks.lake.commits import CommitLog
    from antenna_elt.sinks.lake.hours import HourCloser
    from antenna_elt.sinks.lake.storage import Lake, LakeLocation

    storage = Lake(LakeLocation.parse(str(lake)))
    per_hour = events // HOURS
    per_file = max(1, per_hour // (BATCHES_PER_HOUR * PARTITIONS))
    users = [f"00000000-0000-0000-0000-{n:012d}" for n in range(1, 23)]
    antennas = [f"00000000-0000-0000-0000-0000000001{n:02d}" for n in range(5)]
    apps = ["FACETIME", "SKYPE", "FACEBOOK", "WHATSAPP"]
    rng = np.random.default_rng(7)
    next_offset = [0] * PARTITIONS
    schema = parquet.event_schema()
    utc = pa.timestamp("us", tz="UTC")
    for h in range(HOURS):
        hour = START + h * 3600
        for batch in range(BATCHES_PER_HOUR):
            for p in range(PARTITIONS):
                n = per_file
                seconds = hour + (batch * 60 + np.sort(rng.integers(0, 60, n)))
                first = next_offset[p]
                next_offset[p] += n
                table = pa.Table.from_arrays(
                    [
                        pa.array(seconds * 1_000_000, pa.int64()).cast(utc),
                        pa.array(np.array(users)[rng.integers(0, len(users), n)], pa.string()),
                        pa.array(
                            np.array(antennas)[rng.integers(0, len(antennas), n)], pa.string()
                        ),
                        pa.array(rng.integers(0, 400_000, n), pa.int64()),
                        pa.array(np.array(apps)[rng.integers(0, len(apps), n)], pa.string()),
                        pa.array(["bench"] * n, pa.string()),
                        pa.array([p] * n, pa.int32()),
                        pa.array(np.arange(first, first + n), pa.int64()),
                        pa.array(seconds * 1_000_000, pa.int64()).cast(utc),
                    ],
                    schema=schema,
                )
                path = f"{L.hour_dir(L.EVENTS_TABLE, hour)}/{L.file_name('bench', p, first, first + n - 1)}"
                storage.write_file(
                    path, parquet.encode(table, compression="zstd", row_group_rows=128 * 1024)
                )
        HourCloser(storage, CommitLog(storage, "bench")).write_manifest(hour)


def file_figures(lake: Path) -> dict[str, Any]:
    per_hour: dict[str, list[int]] = defaultdict(list)
    for path in (lake / "device_usage").glob("*/*/*/*/*.parquet"):
        per_hour[str(path.parent)].append(path.stat().st_size)
    counts = [len(v) for v in per_hour.values()]
    sizes = [s for v in per_hour.values() for s in v]
    return {
        "files": len(sizes),
        "files_per_closed_hour": statistics.median(counts),
        "file_mib_median": round(statistics.median(sizes) / 2**20, 3),
        "lake_mib": round(sum(sizes) / 2**20, 1),
    }


def scans(lake: Path, repeats: int = 3) -> dict[str, float]:
    import duckdb

    glob = f"{lake}/device_usage/*/*/*/*/*.parquet"
    out = {}
    for name, sql in (
        ("sum_scan_s", SUM_SCAN.format(glob=glob)),
        ("full_scan_s", FULL_SCAN.format(glob=glob)),
        ("one_hour_s", ONE_HOUR.format(glob=glob, start=START + 12 * 3600)),
    ):
        times = []
        for _ in range(repeats):
            with duckdb.connect() as conn:  # a new connection: no cached metadata
                conn.execute("set threads = 2")
                started = time.monotonic()
                conn.execute(sql).fetchall()
                times.append(time.monotonic() - started)
        out[name] = round(min(times), 3)
    return out


def bench_compaction(events: int, work: Path) -> dict[str, Any]:
    from antenna_elt.sinks.lake.compaction import Compactor
    from antenna_elt.sinks.lake.storage import Lake, LakeLocation

    lake = work / "lake"
    shutil.rmtree(lake, ignore_errors=True)
    started = time.monotonic()
    write_lake(lake, events)
    written_s = time.monotonic() - started
    before = {**file_figures(lake), **scans(lake)}
    compactor = Compactor(Lake(LakeLocation.parse(str(lake))), grace=0)
    started = time.monotonic()
    done = compactor.run()
    compact_s = time.monotonic() - started
    after = {**file_figures(lake), **scans(lake)}  # run() deleted the replaced files (grace 0)
    rows = sum(int(f["rows"]) for c in done for f in c.inputs)
    return {
        "events": rows,
        "closed_hours": HOURS,
        "lake_written_s": round(written_s, 1),
        "uncompacted": before,
        "compacted": after,
        "compaction_s": round(compact_s, 1),
        "compaction_events_per_s": round(rows / compact_s),
        "files_per_closed_hour_ratio": round(
            before["files_per_closed_hour"] / after["files_per_closed_hour"], 1
        ),
        "sum_scan_speedup": round(before["sum_scan_s"] / after["sum_scan_s"], 2),
        "full_scan_speedup": round(before["full_scan_s"] / after["full_scan_s"], 2),
        "one_hour_scan_speedup": round(before["one_hour_s"] / after["one_hour_s"], 2),
    }


def main() -> int:
    events = int(os.environ.get("BENCH_COMPACT_EVENTS", "10000000"))
    work = ROOT / "bench" / "results" / "compaction"
    try:
        print(json.dumps({"compaction": bench_compaction(events, work)}, indent=2))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
