"""Benchmark: lake ingest throughput against the kafka-python consume-only ceiling, and
the files it leaves (counts and sizes per hour; the ingestor compacts closed hours, so
these are the compacted files, and its time includes compacting).

`bench_lake(settings, topic, count, lake)` measures a topic already holding ``count``
messages; `python -m bench.lake` fills a fresh topic with the simulator first
(BENCH_EVENTS, default 1,000,000) and prints the figures as JSON.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import uuid
from collections import defaultdict
from pathlib import Path
from typing import Any

from bench.ingest_postgres import consume_only, run_sampled

ROOT = Path(__file__).resolve().parents[1]


def ingest_lake(topic: str, lake: Path, env: dict[str, str], *extra: str) -> dict[str, Any]:
    """Run `antenna-elt ingest lake --until-caught-up` as a process; time it end to end."""
    cmd = [
        sys.executable, "-m", "antenna_elt.cli", "ingest", "lake", "--topic", topic,
        "--lake", str(lake), "--group", f"bench-lake-{uuid.uuid4().hex[:8]}",
        "--until-caught-up", *extra,
    ]  # fmt: skip
    return run_sampled(cmd, env)


def file_figures(lake: Path) -> dict[str, Any]:
    """Live files (what readers read: once an hour is compacted, its compacted files) and
    their sizes per hour folder of device_usage; replaced files still kept for the grace
    period are counted apart."""
    from antenna_elt.sinks.lake import layout as L
    from antenna_elt.sinks.lake.manifests import HourManifests, live_paths
    from antenna_elt.sinks.lake.storage import Lake, LakeLocation

    storage = Lake(LakeLocation.parse(str(lake)))
    manifests = HourManifests(storage)
    per_hour: dict[str, list[int]] = defaultdict(list)
    on_disk = 0
    for folder in sorted({p.parent for p in (lake / "device_usage").glob("*/*/*/*/*.parquet")}):
        hour = "/".join(part.split("=")[1] for part in folder.parts[-4:])
        rel = str(folder.relative_to(lake))
        names = storage.list(rel)
        on_disk += sum(1 for n in names if n.endswith(".parquet"))
        label = "{}-{}-{}T{}".format(*hour.split("/"))
        for path in live_paths(manifests.published(L.parse_hour(label)), rel, names):
            per_hour[hour].append((lake / path).stat().st_size)
    sizes = [s for hour in per_hour.values() for s in hour]
    counts = [len(v) for v in per_hour.values()]
    return {
        "hours": len(per_hour),
        "files": len(sizes),
        "files_per_hour_median": statistics.median(counts) if counts else 0,
        "files_per_hour_max": max(counts, default=0),
        "file_mib_median": round(statistics.median(sizes) / 2**20, 2) if sizes else 0,
        "file_mib_max": round(max(sizes, default=0) / 2**20, 2),
        "lake_mib": round(sum(sizes) / 2**20, 1),
        "closed_hours": len(list((lake / "_manifests/closed_hours/device_usage").glob("*.json"))),
        "replaced_files_in_grace": on_disk - len(sizes),
    }


def bench_lake(
    settings: Any, topic: str, count: int, lake: Path, ceiling: float | None = None
) -> dict[str, Any]:
    """Consume-only ceiling (unless measured already in this run on this topic), then the
    lake ingestor, on the same topic."""
    if ceiling is None:
        ceiling = consume_only(settings.kafka_bootstrap_servers, topic, count)
    result = ingest_lake(topic, lake, dict(os.environ))
    rate = count / result["seconds"]
    return {
        "events": count,
        "consume_only_events_per_s": round(ceiling),
        "ingest_events_per_s": round(rate),
        "ratio_to_ceiling": round(rate / ceiling, 2),
        "ingest_seconds": round(result["seconds"], 1),
        "peak_rss_mib": round(result["peak_rss_mib"], 1),
        **file_figures(lake),
    }


def main() -> int:
    from antenna_elt.devstack import stack
    from antenna_elt.settings import load_settings
    from bench.__main__ import create_topic, delete_topic, simulate

    settings = load_settings()
    stack.ensure_up(settings)
    count = int(os.environ.get("BENCH_EVENTS", "1000000"))
    topic = f"bench-{uuid.uuid4().hex[:6]}"
    lake = ROOT / "bench" / "results" / f"lake-{topic}"
    create_topic(settings, topic)
    try:
        produce_s = simulate(topic, count)
        figures = {"produce_events_per_s": round(count / produce_s)}
        figures.update(bench_lake(settings, topic, count, lake))
    finally:
        delete_topic(settings, topic)
        subprocess.run(["rm", "-rf", str(lake)], check=False)
    print(json.dumps({"ingest_lake": figures}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
