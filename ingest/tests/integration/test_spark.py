"""Spark as the scale-out option gives the same outputs (issue 16).

On the fixed-seed simulated run that test_dbt_marts.py uses (conftest.py, marts_run.py):
`antenna-elt ingest spark` (Structured Streaming, Spark in local mode, killed with SIGKILL
twice mid-stream and restarted from its checkpoint) leaves a lake equal, row for row, to
the simulator's ledger and to the lake of `antenna-elt ingest lake`; its PostgreSQL path
(foreachBatch) lands exactly the rows of `antenna-elt ingest postgres`; `dbt build --target
spark` over that lake (a first build while the lake was half written, then an incremental
one with every data test) gives the marts PostgreSQL and DuckDB give; and staging on Spark
over the Python lake ingestor's lake, with an hour compacted and the files it replaced still
on disk (grace period), reads every live event once.

One Spark session serves the in-process runs of the module; the killed job and dbt run in
their own processes (dbt-spark's session keeps a Hive metastore that one JVM opens at a time).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from conftest import run_cli
from helpers import all_offsets, end_offsets, unique_group, wait_for
from lake_helpers import all_parquet_files, leftovers, parquet_files, read_lake
from marts_run import Run, rounded
from spark_helpers import committed_offsets, lake_rows, read_spark_table, spark_process

from antenna_elt.dbt import query_duckdb, query_postgres, run_dbt
from antenna_elt.spark.postgres import PostgresBatchWriter
from antenna_elt.spark.session import get_session
from antenna_elt.spark.stream import SparkIngest, StreamOptions

SPARK_MARTS = (
    "bytes",
    "bytes_hourly",
    "user_quota_limit",
    "fct_network_activity_windowed",
    "fct_antenna_bandwidth_windowed",
    "fct_quota_breaches",
    "fct_usage_windowed",
    "fct_user_usage_hourly",
    "fct_devices_active_recent",
)


@pytest.fixture(scope="module")
def spark() -> Iterator[Any]:
    session = get_session(submitted=False, master="local[2]", app_name="antenna-elt tests")
    try:
        yield session
    finally:
        session.stop()


@dataclass
class SparkLake:
    path: Path
    group: str
    kills: list[dict[int, int]]
    """What the lake held each time the job was killed."""


def _kill_group(proc: Any) -> None:
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=60)


@pytest.fixture(scope="module")
def spark_lake(simulated: Run) -> SparkLake:
    """`ingest spark` into a lake of its own, killed twice mid-stream, then run to the end."""
    lake = simulated.tmp / "spark-lake"
    checkpoint = simulated.tmp / "spark-checkpoint"
    group = unique_group()
    log = simulated.tmp / "ingest-spark.log"
    total = sum(end_offsets(simulated.settings, simulated.topic).values())
    args = ("--available-now", "--max-offsets-per-trigger", "3000")
    kills: list[dict[int, int]] = []
    for _ in range(2):
        before = sum(committed_offsets(lake, group, simulated.topic).values())
        proc = spark_process(simulated.topic, lake.as_uri(), group, checkpoint, *args, log_path=log)
        try:
            wait_for(
                lambda before=before: (
                    sum(committed_offsets(lake, group, simulated.topic).values()) > before
                ),
                300,
                "a micro-batch committed to the lake",
            )
        finally:
            _kill_group(proc)
        assert proc.returncode == -signal.SIGKILL, log.read_text()[-3000:]
        kills.append(committed_offsets(lake, group, simulated.topic))
    proc = spark_process(simulated.topic, lake.as_uri(), group, checkpoint, *args, log_path=log)
    try:
        assert proc.wait(timeout=600) == 0, log.read_text()[-3000:]
    finally:
        if proc.poll() is None:
            _kill_group(proc)
    assert all(sum(k.values()) < total for k in kills), "both kills came mid-stream"
    return SparkLake(lake, group, kills)


def test_the_killed_spark_job_leaves_exactly_the_python_ingestors_lake(
    simulated: Run, spark_lake: SparkLake
) -> None:
    python_lake = simulated.tmp / "lake"
    for table in ("device_usage", "device_usage_rejects"):
        assert lake_rows(spark_lake.path, table) == lake_rows(python_lake, table), table
    ledger = simulated.ledger
    events = lake_rows(spark_lake.path)
    assert len(events) == ledger.counters["events"] + ledger.counters["duplicates"]
    reasons: dict[str, int] = {}
    for row in lake_rows(spark_lake.path, "device_usage_rejects"):
        reasons[row[4]] = reasons.get(row[4], 0) + 1
    assert reasons == dict(ledger.malformed_by_kind)
    # every offset once, nothing left half-written, the same file naming and schema
    ends = end_offsets(simulated.settings, simulated.topic)
    offsets = sorted((row[6], row[7]) for row in events)
    offsets += sorted(
        (row[1], row[2]) for row in lake_rows(spark_lake.path, "device_usage_rejects")
    )
    assert sorted(offsets) == all_offsets(ends)
    assert leftovers(spark_lake.path) == []
    assert committed_offsets(spark_lake.path, spark_lake.group, simulated.topic) == ends
    for path in parquet_files(spark_lake.path):
        topic, _, first, last = path.name.removesuffix(".parquet").split("+")
        assert topic == simulated.topic and int(first) <= int(last), path.name
    import pyarrow.parquet as pq

    assert pq.read_schema(parquet_files(spark_lake.path)[0]) == pq.read_schema(
        parquet_files(python_lake)[0]
    )


def test_the_spark_lake_closes_the_same_hours_with_the_same_events(
    simulated: Run, spark_lake: SparkLake
) -> None:
    def closed(root: Path) -> dict[str, int]:
        folder = root / "_manifests" / "closed_hours" / "device_usage"
        return {p.stem: json.loads(p.read_text())["rows"] for p in sorted(folder.glob("*.json"))}

    assert closed(spark_lake.path) == closed(simulated.tmp / "lake")
    assert closed(spark_lake.path), "the run closes hours"


def test_spark_into_postgres_lands_exactly_the_python_ingestors_rows(
    simulated: Run, spark: Any, pg_conn: Any
) -> None:
    schema = f"raw_spark_{uuid.uuid4().hex[:8]}"
    group = unique_group()
    try:
        for attempt in range(2):
            # the second run has a new checkpoint: it starts at the offsets PostgreSQL holds
            writer = PostgresBatchWriter(
                simulated.settings.pg_conninfo, schema, group, simulated.topic
            )
            options = StreamOptions(
                topic=simulated.topic,
                bootstrap_servers=simulated.settings.kafka_bootstrap_servers,
                checkpoint=str(simulated.tmp / f"spark-pg-checkpoint-{attempt}"),
                available_now=True,
                max_offsets_per_trigger=10_000,
            )
            stats = SparkIngest(spark, writer, options).run()
            assert stats.messages == (30_000 if attempt == 0 else 0)
        columns = (
            "event_time, id, antenna_id, bytes, app, kafka_topic, kafka_partition, kafka_offset"
        )
        for table, cols in (
            ("device_usage", columns),
            (
                "device_usage_rejects",
                "kafka_topic, kafka_partition, kafka_offset, raw_value, reason",
            ),
        ):
            sql = f"select {cols} from {{}}.{table} order by kafka_partition, kafka_offset"
            spark_rows = pg_conn.execute(sql.format(schema)).fetchall()
            assert spark_rows == pg_conn.execute(sql.format(simulated.raw_schema)).fetchall()
    finally:
        pg_conn.execute(f"drop schema if exists {schema} cascade")


@pytest.fixture(scope="module")
def spark_marts(simulated: Run, spark_lake: SparkLake) -> tuple[str, Path]:
    """dbt on Spark: the seed and models over the lake as the first kill left it, then an
    incremental `dbt build` (every data test) over the whole lake: it must equal the full
    builds of the other targets."""
    schema = f"{simulated.prefix}_spark"
    dbt_dir = simulated.tmp / "spark-dbt"
    half = simulated.tmp / "spark-lake-half"
    env = {
        "ANTENNA_ELT_DBT_SCHEMA": schema,
        "ANTENNA_ELT_SPARK_DBT_DIR": str(dbt_dir),
        "ANTENNA_ELT_LAKE": half.as_uri(),
    }
    raw_vars = ["--vars", f"{{raw_schema: {schema}_raw}}"]
    target = ["--target", "spark", "--target-path", str(dbt_dir / "target")]
    # the first build sees the files of the first committed micro-batches only
    first_files = _files_of_first_commits(spark_lake)
    for path in first_files:
        copy = half / path.relative_to(spark_lake.path)
        copy.parent.mkdir(parents=True, exist_ok=True)
        copy.write_bytes(path.read_bytes())
    run_dbt(
        ["build", *target, *raw_vars, "--resource-type", "seed", "--resource-type", "model"],
        env=env,
    )
    # then the whole lake, at the same place (as if the job had gone on writing there)
    for path in parquet_files(spark_lake.path) + parquet_files(
        spark_lake.path, "device_usage_rejects"
    ):
        copy = half / path.relative_to(spark_lake.path)
        if not copy.exists():
            copy.parent.mkdir(parents=True, exist_ok=True)
            copy.write_bytes(path.read_bytes())
    started = time.monotonic()
    # every data test (the dbt unit tests pass on Spark too, but cost a minute: they run on
    # the other targets)
    run_dbt(["build", *target, *raw_vars, "--exclude", "test_type:unit"], env=env)
    print(f"incremental dbt build on spark: {time.monotonic() - started:.0f} s")
    return schema, dbt_dir


def _files_of_first_commits(spark_lake: SparkLake) -> list[Path]:
    """The files the lake held at the first kill (the first micro-batches' commits)."""
    first = spark_lake.kills[0]
    found = []
    for path in parquet_files(spark_lake.path) + parquet_files(
        spark_lake.path, "device_usage_rejects"
    ):
        _, partition, _, last = path.name.removesuffix(".parquet").split("+")
        if int(last) < first.get(int(partition), 0):
            found.append(path)
    assert found
    return found


def _columns(run: Run, schema: str, mart: str) -> list[str]:
    rows = query_postgres(
        run.settings.pg_conninfo,
        "select column_name from information_schema.columns where table_schema = "
        f"'{schema}_marts' and table_name = '{mart}' order by ordinal_position",
    )
    return [name for (name,) in rows]


def _sorted(rows: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    return sorted(rounded(rows), key=lambda row: tuple((v is None, str(v)) for v in row))


def test_dbt_on_spark_builds_the_same_marts_as_postgres_and_duckdb(
    simulated: Run, postgres_marts: str, duckdb_marts: str, spark_marts: tuple[str, Path]
) -> None:
    schema, dbt_dir = spark_marts
    for mart in SPARK_MARTS:
        columns = _columns(simulated, postgres_marts, mart)
        built = read_spark_table(dbt_dir, f"{schema}_marts", mart, columns)
        plain = ", ".join(f'"{c}"' if c == "timestamp" else c for c in columns)
        pg = query_postgres(
            simulated.settings.pg_conninfo, f"select {plain} from {postgres_marts}_marts.{mart}"
        )
        duck = query_duckdb(
            simulated.tmp / "warehouse.duckdb", f"select {plain} from {duckdb_marts}_marts.{mart}"
        )
        assert _sorted(built) == _sorted(pg), mart
        assert _sorted(built) == _sorted(duck), mart


def test_dbt_on_spark_reads_a_compacted_hour_once_while_its_replaced_files_remain(
    simulated: Run,
) -> None:
    """The Python lake ingestor compacts closed hours and keeps the replaced files for a grace
    period: staging on Spark reads the live files only (the rule of
    antenna_elt.sinks.lake.manifests), never a compacted file and the files it replaced."""
    lake = simulated.tmp / "spark-compacted-lake"
    shutil.copytree(simulated.tmp / "lake", lake)
    # compacted again with a small size target (on top of what the ingestor compacted): the
    # files replaced, compacted ones among them, stay for the default grace period (1 h)
    proc = run_cli("lake", "compact", "--lake", lake.as_uri(), "--compact-target-mib", "1")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    replaced = set(all_parquet_files(lake)) - set(parquet_files(lake))
    assert replaced, proc.stdout
    live = read_lake(lake)
    expected = {
        "events": live.num_rows,
        "total_bytes": sum(live.column("bytes").to_pylist()),
        "offsets": len(
            set(
                zip(
                    live.column("kafka_partition").to_pylist(),
                    live.column("kafka_offset").to_pylist(),
                    strict=True,
                )
            )
        ),
    }
    # every message once (duplicates are byte-identical re-sends: the ledger counts them once)
    ledger = simulated.ledger
    assert expected["events"] == expected["offsets"]
    assert expected["events"] == ledger.counters["events"] + ledger.counters["duplicates"]
    assert expected["total_bytes"] == sum(row[3] for row in lake_rows(simulated.tmp / "lake"))
    expected["unique_bytes"] = ledger.total_bytes

    schema = f"{simulated.prefix}_spark_compacted"
    dbt_dir = simulated.tmp / "spark-dbt-compacted"
    env = {
        "ANTENNA_ELT_DBT_SCHEMA": schema,
        "ANTENNA_ELT_SPARK_DBT_DIR": str(dbt_dir),
        "ANTENNA_ELT_LAKE": lake.as_uri(),
    }
    target = ["--target", "spark", "--target-path", str(dbt_dir / "target")]
    raw_vars = ["--vars", f"{{raw_schema: {schema}_raw}}"]
    run_dbt(["run", *target, *raw_vars, "-s", "stg_raw__device_usage"], env=env)
    sql = (
        "select count(*) as events, sum(bytes) as total_bytes,"
        " count(distinct kafka_partition, kafka_offset) as offsets,"
        " (select sum(events.bytes) from (select distinct event_at, device_id, antenna_id, app,"
        " bytes from {{ ref('stg_raw__device_usage') }}) as events) as unique_bytes"
        " from {{ ref('stg_raw__device_usage') }}"
    )
    shown = run_dbt(
        ["--quiet", "show", *target, *raw_vars, "--inline", sql, "--output", "json"], env=env
    ).stdout
    staged = json.loads(shown[shown.index("{") :])["show"]
    assert staged == [expected]
