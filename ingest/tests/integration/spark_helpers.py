"""Helpers of the Spark tests: run `antenna-elt ingest spark` as a process (to kill it),
read the lake back without ingest times, and read what `dbt build --target spark` built
through its Hive metastore (in a child process: Derby lets one JVM open it at a time)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import datetime
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
            result[int(partition_dir.name)] = json.loads(records[-1].read_text())["next_offset"]
    return result


_READER = r"""
import json, sys
from pyspark.sql import SparkSession
conf, queries = json.loads(sys.argv[1]), json.loads(sys.argv[2])
builder = SparkSession.builder.enableHiveSupport()
for key, value in conf.items():
    builder = builder.config(key, value)
spark = builder.getOrCreate()
out = {}
for name, sql in queries.items():
    out[name] = [
        [v.isoformat() if hasattr(v, "isoformat") else v for v in row]
        for row in spark.sql(sql).collect()
    ]
spark.stop()
print("RESULT " + json.dumps(out))
"""


def spark_dbt_conf(dbt_dir: Path) -> dict[str, str]:
    """The dbt profile's session settings (profiles.yml.example, target spark)."""
    return {
        "spark.master": "local[2]",
        "spark.sql.session.timeZone": "UTC",
        "spark.ui.enabled": "false",
        "spark.ui.showConsoleProgress": "false",
        "spark.driver.host": "127.0.0.1",
        "spark.driver.bindAddress": "127.0.0.1",
        "spark.sql.warehouse.dir": f"{dbt_dir}/warehouse",
        "spark.hadoop.javax.jdo.option.ConnectionURL": (
            f"jdbc:derby:;databaseName={dbt_dir}/metastore_db;create=true"
        ),
        "spark.driver.extraJavaOptions": f"-Dderby.system.home={dbt_dir}",
    }


def query_spark_warehouse(
    dbt_dir: Path, queries: dict[str, str]
) -> dict[str, list[tuple[Any, ...]]]:
    """Run ``queries`` on the tables dbt built on Spark; timestamps come back as naive UTC
    datetimes, like PostgreSQL's and DuckDB's."""
    proc = subprocess.run(
        [sys.executable, "-c", _READER, json.dumps(spark_dbt_conf(dbt_dir)), json.dumps(queries)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, "TZ": "UTC"},
        timeout=600,
    )
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    assert proc.returncode == 0 and lines, proc.stderr[-3000:]
    raw = json.loads(lines[-1].removeprefix("RESULT "))
    return {name: [tuple(_value(v) for v in row) for row in rows] for name, rows in raw.items()}


def _value(value: Any) -> Any:
    if isinstance(value, str) and len(value) >= 19 and value[4] == "-" and value[10] == "T":
        try:
            return datetime.fromisoformat(value)
        except ValueError:
            return value
    return value
