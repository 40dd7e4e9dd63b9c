"""Helpers of the lake tests: run the lake ingestor, read the lake back."""

from __future__ import annotations

import functools
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from helpers import ROOT

from antenna_elt.ingest.loop import IngestLoop, LoopOptions, Stats
from antenna_elt.settings import Settings, load_settings
from antenna_elt.sinks.lake import layout as L
from antenna_elt.sinks.lake.manifests import HourManifests, live_paths
from antenna_elt.sinks.lake.sink import LakeSink
from antenna_elt.sinks.lake.storage import Lake, LakeLocation

DEVICE = "00000000-0000-0000-0000-000000000001"
ANTENNA = "a0000000-0000-0000-0000-00000000000a"
HOUR_03 = 1_795_489_200  # 2026-11-24T03:00:00Z


def event(ts: int, nbytes: int, device: str = DEVICE, app: str = "SKYPE") -> bytes:
    return json.dumps(
        {"timestamp": ts, "id": device, "antenna_id": ANTENNA, "bytes": nbytes, "app": app}
    ).encode()


def lake_loop(
    settings: Settings,
    topic: str,
    lake: str,
    group: str,
    *,
    batch_size: int = 250_000,
    max_latency: float = 0.5,
    close_grace: float = 600.0,
    until_caught_up: bool = True,
    compact: bool = True,
) -> IngestLoop:
    sink = functools.partial(LakeSink, lake, group, close_grace=close_grace, compact=compact)
    options = LoopOptions(
        client=load_settings().kafka_client,
        topic=topic,
        group_id=group,
        bootstrap_servers=settings.kafka_bootstrap_servers,
        batch_size=batch_size,
        max_latency=max_latency,
        until_caught_up=until_caught_up,
        idle_timeout=120 if until_caught_up else None,
        log_interval=2.0,
    )
    return IngestLoop(sink, options)


def ingest_lake(settings: Settings, topic: str, lake: str, group: str, **kwargs: Any) -> Stats:
    return lake_loop(settings, topic, lake, group, **kwargs).run()


def lake_process(
    topic: str,
    lake: str,
    group: str,
    *extra: str,
    log_path: Path,
    env: dict[str, str] | None = None,
) -> subprocess.Popen[bytes]:
    """`antenna-elt ingest lake` as a separate process (to kill -9 it)."""
    cmd = [
        sys.executable, "-m", "antenna_elt.cli", "ingest", "lake", "--topic", topic,
        "--lake", lake, "--group", group, "--log-interval", "2", *extra,
    ]  # fmt: skip
    log = open(log_path, "ab")  # noqa: SIM115 - handed to the child process
    return subprocess.Popen(
        cmd, stdout=log, stderr=subprocess.STDOUT, env=env or dict(os.environ), cwd=ROOT
    )


def parquet_files(root: Path, table: str = "device_usage") -> list[Path]:
    """The table's live files: what a reader reads (once an hour was compacted, the files
    its published manifest lists instead of those they replaced, see
    antenna_elt.sinks.lake.manifests)."""
    found = sorted((root / table).glob("*/*/*/*/*.parquet"))
    if table != "device_usage":
        return found
    lake = Lake(LakeLocation.parse(str(root)))
    manifests = HourManifests(lake)
    live: list[Path] = []
    for folder in sorted({p.parent for p in found}):
        rel = str(folder.relative_to(root))
        label = "{}-{}-{}T{}".format(*(part.split("=")[1] for part in rel.split("/")[1:]))
        manifest = manifests.published(L.parse_hour(label))
        live += [root / p for p in live_paths(manifest, rel, lake.list(rel))]
    return live


def all_parquet_files(root: Path, table: str = "device_usage") -> list[Path]:
    """Every file on disk, live or replaced by compaction and not yet deleted."""
    return sorted((root / table).glob("*/*/*/*/*.parquet"))


def read_lake(root: Path, table: str = "device_usage") -> Any:
    """Every committed row of a local lake table, as one pyarrow table."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    files = parquet_files(root, table)
    if not files:
        return None
    return pa.concat_tables([pq.read_table(f, partitioning=None) for f in files])


def lake_offsets(root: Path) -> list[tuple[int, int]]:
    """(partition, offset) of every event and reject in the lake, duplicates kept."""
    found: list[tuple[int, int]] = []
    for table in ("device_usage", "device_usage_rejects"):
        data = read_lake(root, table)
        if data is not None:
            found += list(
                zip(
                    data.column("kafka_partition").to_pylist(),
                    data.column("kafka_offset").to_pylist(),
                    strict=True,
                )
            )
    return found


def leftovers(root: Path) -> list[str]:
    """Temporary files: uncommitted data and half-written records."""
    names = [p for p in root.rglob("*") if p.is_file()]
    return sorted(
        str(p.relative_to(root))
        for p in names
        if p.suffix in (".tmp", ".partial") or "/tmp/" in str(p.relative_to(root))
    )
