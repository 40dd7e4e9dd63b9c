"""Helpers of the Spark tests: run `antenna-elt ingest spark` as a process (to kill it),
read the lake back without ingest times, and read the tables `dbt build --target spark`
built from their Parquet folders (no JVM: dbt-spark's Derby metastore lets one process open
it at a time, and a Spark session costs half a minute)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from helpers import ROOT
from lake_helpers import read_lake


def spark_process(
    topic: str, lake: str, group: str, checkpoint: Path, *extra: str, log_path: Path
) -> subprocess.Popen[bytes]:
    """`antenna-elt ingest spark` in its own process group: killing the group kills the
    driver, its JVM and the executors' Python workers at once, as a lost machine would."""
    cmd = [
        sys.executable, "-m", "antenna_elt.cli", "ingest", "spark", "--topic", topic,
        "--lake", lake, "--group", group, "--checkpoint", str(checkpoint), "--log-interval", "2",
        *extra,
    ]  # fmt: skip
    log = open(log_path, "ab")  # noqa: SIM115 - handed to the child process
    return subprocess.Popen(
        cmd,
        stdout=log,
        stderr=subprocess.STDOUT,
        env=dict(os.environ),
        cwd=ROOT,
        start_new_session=True,
    )


def lake_rows(root: Path, table: str = "device_usage") -> list[tuple[Any, ...]]:
    """Every row of a lake table but its ingest time, sorted."""
    data = read_lake(root, table)
    if data is None:
        return []
    columns = [c for c in data.column_names if c != "ingested_at"]
    return sorted(
        (tuple(row[c] for c in columns) for row in data.select(columns).to_pylist()),
        key=lambda row: tuple((v is None, str(v)) for v in row),
    )


def committed_offsets(lake: Path, group: str, topic: str) -> dict[int, int]:
    """Next offset of each partition per the lake's newest commit records."""
    result: dict[int, int] = {}
    for partition_dir in sorted((lake / "_ingest" / group / topic).glob("*")):
        records = sorted((partition_dir / "commits").glob("*.json"))
        if records:
            # a fence on a partition never written holds no offset yet
            stored = json.loads(records[-1].read_text())["next_offset"]
            result[int(partition_dir.name)] = 0 if stored is None else int(stored)
    return result


def read_spark_table(
    dbt_dir: Path, schema: str, table: str, columns: list[str]
) -> list[tuple[Any, ...]]:
    """The rows of a table dbt built on Spark, read from its Parquet folder in the local
    warehouse (`<schema>.db/<table>/<partition>=<value>/part-*.parquet`) without a JVM:
    partition values come from the folder names, timestamps as naive UTC datetimes."""
    import pyarrow.dataset as ds

    folder = dbt_dir / "warehouse" / f"{schema}.db" / table
    data = ds.dataset(folder, format="parquet", partitioning="hive").to_table()
    rows = data.select(columns).to_pylist()
    return [tuple(_value(row[c]) for c in columns) for row in rows]


def _value(value: Any) -> Any:
    """A partition value from a folder name (`2026-11-24 08:00:00`) as a datetime; Spark's
    INT96 timestamps (nanoseconds, read as pandas timestamps) as datetimes."""
    if hasattr(value, "to_pydatetime"):
        value = value.to_pydatetime()
    if isinstance(value, str) and len(value) == 19 and value[4] == "-" and value[13] == ":":
        try:
            return datetime.fromisoformat(value)
        except ValueError:
            return value
    if isinstance(value, datetime) and value.tzinfo is not None:
        return value.astimezone(UTC).replace(tzinfo=None)
    return value
