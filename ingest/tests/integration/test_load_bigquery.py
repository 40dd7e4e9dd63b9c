"""`antenna-elt load bigquery`: which hours load, and the exact load jobs sent.

BigQuery itself is reached only where credentials exist; here a recording client stands
in for it, and everything up to the API call is checked: closed-hour selection, the job
configuration, the partition decorator and the source URIs.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from conftest import run_cli
from google.cloud import bigquery
from lake_helpers import HOUR_03, event

from antenna_elt.errors import UserError
from antenna_elt.ingest.batch import Batch
from antenna_elt.load.bigquery import load_hours, partition_decorator, plan_loads
from antenna_elt.sinks.lake import storage as L
from antenna_elt.sinks.lake.sink import LakeSink

HOUR = 3600
TABLE = "proj.ds.device_usage"


class RecordingJob:
    def __init__(self, job_id: str):
        self.job_id = job_id

    def result(self) -> RecordingJob:
        return self


class RecordingClient:
    """Records what would be sent to BigQuery."""

    def __init__(self) -> None:
        self.tables: list[tuple[Any, bool]] = []
        self.loads: list[tuple[list[str], str, Any]] = []
        self.queries: list[tuple[str, Any]] = []

    def create_table(self, table: Any, exists_ok: bool = False) -> Any:
        self.tables.append((table, exists_ok))
        return table

    def load_table_from_uri(self, uris: list[str], destination: str, job_config: Any) -> Any:
        self.loads.append((list(uris), destination, job_config))
        return RecordingJob(f"job-{len(self.loads)}")

    def query(self, sql: str, job_config: Any) -> Any:
        self.queries.append((sql, job_config))
        return RecordingJob(f"query-{len(self.queries)}")


def write(sink: LakeSink, partition: int, first: int, values: list[bytes]) -> None:
    batch = Batch("devices")
    # no record timestamps (-1): the clock bounds the event times
    batch.messages = [(partition, first + i, v, -1) for i, v in enumerate(values)]
    batch.first_offsets = {partition: first}
    batch.next_offsets = {partition: first + len(values)}
    sink.write(batch)


@pytest.fixture
def lake(tmp_path: Path) -> Path:
    """Hours 03 and 04 closed (watermark 05:15 - 10 min), hour 05 open."""
    root = tmp_path / "lake"
    sink = LakeSink(str(root), "g", close_grace=600)
    write(sink, 0, 0, [event(HOUR_03 + 600 * i, i) for i in range(6)])
    write(sink, 0, 6, [event(HOUR_03 + HOUR + 600, 10), event(HOUR_03 + 2 * HOUR + 900, 20)])
    return root


def local(root: Path) -> L.Lake:
    return L.Lake(L.LakeLocation.parse(str(root)))


def test_only_closed_hours_are_planned_and_force_adds_the_open_ones(lake: Path) -> None:
    plan = plan_loads(local(lake), since=HOUR_03)
    assert [(load.label, load.rows, load.closed) for load in plan.loads] == [
        ("2026-11-24T03", 6, True),
        ("2026-11-24T04", 1, True),
    ]
    assert plan.skipped == ["2026-11-24T05: not closed yet (--force loads it)"]

    forced = plan_loads(local(lake), since=HOUR_03 + HOUR, force=True)
    assert [(load.label, load.closed) for load in forced.loads] == [
        ("2026-11-24T04", True),
        ("2026-11-24T05", False),
    ]
    assert [
        load.label for load in plan_loads(local(lake), since=HOUR_03, until=HOUR_03 + HOUR).loads
    ] == ["2026-11-24T03"]
    with pytest.raises(UserError, match=r"hour 2026-11-24T05 is not closed .* or pass --force"):
        plan_loads(local(lake), hour=HOUR_03 + 2 * HOUR)


def test_each_hour_is_one_truncating_parquet_load_into_its_hour_partition(lake: Path) -> None:
    client = RecordingClient()
    plan = plan_loads(local(lake), hour=HOUR_03)

    assert load_hours(client, local(lake), TABLE, plan) == ["job-1"]

    [(table, exists_ok), (loads, loads_exists_ok)] = client.tables
    assert (table.table_id, exists_ok) == ("device_usage", True)
    assert (loads.table_id, loads_exists_ok) == ("lake_loads", True)
    # after the load job, the hour gets a new load_seq: dbt's ingestion watermark there
    [(sql, query_config)] = client.queries
    assert "merge `proj.ds.lake_loads`" in sql and "unix_micros(current_timestamp())" in sql
    params = {p.name: p.value for p in query_config.query_parameters}
    assert params["hour_start"].isoformat() == "2026-11-24T03:00:00+00:00"
    assert (params["rows"], params["job_id"]) == (6, "job-1")
    assert (table.time_partitioning.type_, table.time_partitioning.field) == ("HOUR", "event_time")
    [(uris, destination, config)] = client.loads
    assert destination == "proj.ds.device_usage$2026112403"
    assert uris == [
        lake.as_uri() + "/device_usage/year=2026/month=11/day=24/hour=03/"
        "devices+0+00000000000000000000+00000000000000000005.parquet"
    ]
    assert config.source_format == bigquery.SourceFormat.PARQUET == "PARQUET"
    assert config.write_disposition == "WRITE_TRUNCATE"
    assert config.create_disposition == "CREATE_IF_NEEDED"
    assert (config.time_partitioning.type_, config.time_partitioning.field) == (
        "HOUR",
        "event_time",
    )
    assert [(f.name, f.field_type, f.mode) for f in config.schema] == [
        ("event_time", "TIMESTAMP", "REQUIRED"),
        ("id", "STRING", "REQUIRED"),
        ("antenna_id", "STRING", "REQUIRED"),
        ("bytes", "INT64", "REQUIRED"),
        ("app", "STRING", "REQUIRED"),
        ("kafka_topic", "STRING", "REQUIRED"),
        ("kafka_partition", "INT64", "REQUIRED"),
        ("kafka_offset", "INT64", "REQUIRED"),
        ("ingested_at", "TIMESTAMP", "REQUIRED"),
    ]


def test_partition_decorator_names_the_utc_hour() -> None:
    assert partition_decorator(TABLE, HOUR_03) == "proj.ds.device_usage$2026112403"
    assert partition_decorator(TABLE, HOUR_03 + 21 * HOUR) == "proj.ds.device_usage$2026112500"


def test_since_skips_hours_loaded_from_their_manifest_until_late_events_change_it(
    lake: Path,
) -> None:
    client = RecordingClient()
    load_hours(client, local(lake), TABLE, plan_loads(local(lake), since=HOUR_03, table_id=TABLE))
    assert [d for _, d, _ in client.loads] == [
        "proj.ds.device_usage$2026112403",
        "proj.ds.device_usage$2026112404",
    ]
    again = plan_loads(local(lake), since=HOUR_03, table_id=TABLE)
    assert again.loads == []

    # a late event for hour 03 adds a file and rewrites its manifest: 03 loads again, whole
    # (the sink then compacts the hour's two files into one: the load reads that one only)
    write(LakeSink(str(lake), "g"), 0, 8, [event(HOUR_03 + 30, 99)])
    after_late = plan_loads(local(lake), since=HOUR_03, table_id=TABLE)
    assert [(load.label, load.rows, len(load.files)) for load in after_late.loads] == [
        ("2026-11-24T03", 7, 1)
    ]
    assert Path(after_late.loads[0].files[0]).name.startswith("compacted-")
    assert [
        load.label
        for load in plan_loads(local(lake), since=HOUR_03, table_id=TABLE, reload=True).loads
    ] == [
        "2026-11-24T03",
        "2026-11-24T04",
    ]


# -- command line --------------------------------------------------------------------------


def cli_env(**extra: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("GOOGLE_CLOUD_PROJECT", "BIGQUERY_DATASET", "ANTENNA_ELT_LAKE")
    }
    return {**env, **extra}


def one_error_line(*args: str, env: dict[str, str]) -> str:
    proc = run_cli("load", "bigquery", *args, env=env, timeout=60)
    assert proc.returncode == 2, proc.stderr
    [line] = proc.stderr.strip().splitlines()
    return line


def test_missing_project_and_dataset_is_one_line_naming_them(lake: Path) -> None:
    assert one_error_line("--hour", "2026-11-24T03", "--lake", "gs://b/lake", env=cli_env()) == (
        "antenna-elt: error: set GOOGLE_CLOUD_PROJECT and BIGQUERY_DATASET "
        "(or pass --project/--dataset) to load into BigQuery"
    )


def test_bad_arguments_are_one_line(lake: Path) -> None:
    env = cli_env(GOOGLE_CLOUD_PROJECT="proj", BIGQUERY_DATASET="ds")
    assert one_error_line("--lake", str(lake), env=env) == (
        "antenna-elt: error: pass either --hour YYYY-MM-DDTHH or --since YYYY-MM-DDTHH"
    )
    assert one_error_line("--hour", "03:00", env=env) == (
        "antenna-elt: error: '03:00' is not an hour like 2026-11-24T03; give hours as "
        "YYYY-MM-DDTHH in UTC"
    )
    assert one_error_line(
        "--hour", "2026-11-24T03", "--since", "2026-11-24T03", env=env
    ).startswith(
        "antenna-elt load bigquery: error: argument --since: not allowed with argument --hour"
    )
    assert one_error_line("--hour", "2026-11-24T03", "--lake", str(lake), env=env) == (
        f"antenna-elt: error: BigQuery loads Parquet from Cloud Storage only, and the lake is "
        f"{lake.as_uri()}; set ANTENNA_ELT_LAKE (or --lake) to a gs:// URI, or use --dry-run"
    )


def test_dry_run_prints_each_hour_partition_and_file_count(lake: Path) -> None:
    env = cli_env(GOOGLE_CLOUD_PROJECT="proj", BIGQUERY_DATASET="ds")
    proc = run_cli(
        "load", "bigquery", "--since", "2026-11-24T00", "--lake", str(lake), "--dry-run", env=env
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == [
        "2026-11-24T03\tproj.ds.device_usage$2026112403\t1 files\t6 rows\tclosed",
        "2026-11-24T04\tproj.ds.device_usage$2026112404\t1 files\t1 rows\tclosed",
    ]
    assert "skipped 2026-11-24T05: not closed yet (--force loads it)" in proc.stderr
