"""The BigQuery loader (``antenna-elt load bigquery``): load closed hours of the lake into BigQuery, idempotently.

Each hour is one load job: the Parquet files the hour's closed-hours manifest lists,
``WRITE_TRUNCATE`` into the partition decorator ``<table>$YYYYMMDDHH`` of a table
partitioned by hour on ``event_time``. Loading an hour again replaces exactly that hour,
so re-runs and late events (which rewrite the manifest) never double anything. Compaction
publishes a new manifest version listing the compacted files instead of the ones they
replace (:mod:`antenna_elt.sinks.lake.manifests`): a load reads one manifest, so it loads
the old files or the new ones, never both; the old files outlive the grace period
(ANTENNA_ELT_COMPACT_GRACE) so that a load job started from the older version still
finds them. The new version makes ``--since`` load the hour again (same rows). Which
hours were loaded, from which manifest version, is recorded under
``<lake>/_manifests/loaded/bigquery/<table>/``; ``--since`` skips hours already loaded
from their current manifest.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from antenna_elt.errors import UserError
from antenna_elt.schema import EVENTS, bigquery_fields
from antenna_elt.settings import Settings
from antenna_elt.sinks.lake import layout as L
from antenna_elt.sinks.lake.manifests import live_paths
from antenna_elt.sinks.lake.storage import Lake, LakeLocation

log = logging.getLogger("antenna_elt.load")

HOUR = L.HOUR

BIGQUERY_SCHEMA = bigquery_fields(EVENTS)
"""(name, BigQuery type, mode) of the table: the lake's columns."""


@dataclass(frozen=True)
class HourLoad:
    """One hour to load: its files and what the manifest says about them."""

    hour: int
    files: list[str]
    rows: int
    closed: bool
    manifest_version: int | None = None
    manifest_updated_at: str | None = None

    @property
    def label(self) -> str:
        return L.hour_label(self.hour)


@dataclass
class LoadPlan:
    loads: list[HourLoad] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    """One line per hour left out, saying why."""


def partition_decorator(table_id: str, hour: int) -> str:
    """``project.dataset.device_usage$2026112403``: the hour's partition of the table."""
    return f"{table_id}${datetime.fromtimestamp(hour, UTC):%Y%m%d%H}"


def loaded_record(table_id: str, hour: int) -> str:
    return f"_manifests/loaded/bigquery/{table_id}/{L.hour_label(hour)}.json"


def _hours_in(lake: Lake, folder: str) -> list[int]:
    return [L.parse_hour(n.removesuffix(".json")) for n in lake.list(folder) if n.endswith(".json")]


def _open_hour(lake: Lake, hour: int) -> HourLoad:
    folder = L.hour_dir(L.EVENTS_TABLE, hour)
    files = live_paths(None, folder, lake.list(folder))
    return HourLoad(hour=hour, files=files, rows=-1, closed=False)


def _closed_hour(lake: Lake, hour: int) -> HourLoad | None:
    manifest = lake.read_json(L.closed_manifest(hour))
    if manifest is None:
        return None
    return HourLoad(
        hour=hour,
        files=[f["path"] for f in manifest["files"]],
        rows=int(manifest["rows"]),
        closed=True,
        manifest_version=int(manifest.get("version", 1)),
        manifest_updated_at=manifest.get("updated_at"),
    )


def plan_loads(
    lake: Lake,
    *,
    hour: int | None = None,
    since: int | None = None,
    until: int | None = None,
    force: bool = False,
    table_id: str | None = None,
    reload: bool = False,
) -> LoadPlan:
    """Which hours to load: ``hour`` alone, or every hour in [since, until).

    Only closed hours, unless ``force``. With ``since``, hours already loaded into
    ``table_id`` from their current manifest are skipped unless ``reload``.
    """
    plan = LoadPlan()
    if hour is not None:
        closed = _closed_hour(lake, hour)
        if closed is not None:
            plan.loads.append(closed)
        elif force:
            plan.loads.append(_open_hour(lake, hour))
        else:
            raise UserError(
                f"hour {L.hour_label(hour)} is not closed in {lake.location.uri} (its events may "
                "still arrive); wait for `antenna-elt ingest lake` to close it, or pass --force"
            )
    else:
        assert since is not None
        in_range = lambda h: since <= h and (until is None or h < until)  # noqa: E731
        for h in sorted(filter(in_range, _hours_in(lake, L.CLOSED_HOURS))):
            closed = _closed_hour(lake, h)
            if closed is None:
                continue
            done = lake.read_json(loaded_record(table_id, h)) if table_id and not reload else None
            if done is not None and done.get("manifest_updated_at") == closed.manifest_updated_at:
                plan.skipped.append(f"{closed.label}: already loaded from this manifest")
                continue
            plan.loads.append(closed)
        for h in sorted(filter(in_range, _hours_in(lake, L.OPEN_HOURS))):
            if any(load.hour == h for load in plan.loads):
                continue
            if force:
                plan.loads.append(_open_hour(lake, h))
            else:
                plan.skipped.append(f"{L.hour_label(h)}: not closed yet (--force loads it)")
        plan.loads.sort(key=lambda load: load.hour)
    empty = [load for load in plan.loads if not load.files]
    for load in empty:
        plan.skipped.append(f"{load.label}: no files")
    plan.loads = [load for load in plan.loads if load.files]
    return plan


def schema_fields(bigquery: Any) -> list[Any]:
    return [bigquery.SchemaField(name, kind, mode=mode) for name, kind, mode in BIGQUERY_SCHEMA]


def job_config(bigquery: Any) -> Any:
    """The load job: Parquet, replace the partition, table partitioned by hour."""
    return bigquery.LoadJobConfig(
        source_format=bigquery.SourceFormat.PARQUET,
        write_disposition=bigquery.WriteDisposition.WRITE_TRUNCATE,
        create_disposition=bigquery.CreateDisposition.CREATE_IF_NEEDED,
        time_partitioning=bigquery.TimePartitioning(
            type_=bigquery.TimePartitioningType.HOUR, field="event_time"
        ),
        schema=schema_fields(bigquery),
    )


def table_definition(bigquery: Any, table_id: str) -> Any:
    table = bigquery.Table(table_id, schema=schema_fields(bigquery))
    table.time_partitioning = bigquery.TimePartitioning(
        type_=bigquery.TimePartitioningType.HOUR, field="event_time"
    )
    table.description = "Valid device usage events, loaded hour by hour from the Parquet lake."
    return table


def loads_table_id(table_id: str) -> str:
    """The table beside the events that records each hour's load (dbt's ingestion watermark
    on BigQuery: macros/ingest_increments.sql)."""
    return f"{table_id.rsplit('.', 1)[0]}.lake_loads"


def loads_table_definition(bigquery: Any, table_id: str) -> Any:
    table = bigquery.Table(
        loads_table_id(table_id),
        schema=[
            bigquery.SchemaField("hour_start", "TIMESTAMP", mode="REQUIRED"),
            bigquery.SchemaField("load_seq", "INT64", mode="REQUIRED"),
            bigquery.SchemaField("loaded_at", "TIMESTAMP", mode="REQUIRED"),
            bigquery.SchemaField("rows", "INT64"),
            bigquery.SchemaField("job_id", "STRING"),
        ],
    )
    table.description = (
        "One row per loaded hour: load_seq (microseconds of the load) orders the loads, so "
        "dbt rebuilds the hours loaded since each mart's last build."
    )
    return table


RECORD_LOAD = """
merge `{loads}` as loads
using (select @hour_start as hour_start) as loaded
on loads.hour_start = loaded.hour_start
when matched then update set
    load_seq = unix_micros(current_timestamp()), loaded_at = current_timestamp(),
    rows = @rows, job_id = @job_id
when not matched then insert (hour_start, load_seq, loaded_at, rows, job_id)
    values (@hour_start, unix_micros(current_timestamp()), current_timestamp(), @rows, @job_id)
"""


def record_load(
    client: Any, bigquery: Any, table_id: str, hour: int, rows: int, job_id: str
) -> None:
    """Mark the hour loaded with a new load_seq, after its load job succeeded."""
    from datetime import UTC, datetime

    config = bigquery.QueryJobConfig(
        query_parameters=[
            bigquery.ScalarQueryParameter(
                "hour_start", "TIMESTAMP", datetime.fromtimestamp(hour, UTC)
            ),
            bigquery.ScalarQueryParameter("rows", "INT64", rows),
            bigquery.ScalarQueryParameter("job_id", "STRING", job_id),
        ]
    )
    client.query(RECORD_LOAD.format(loads=loads_table_id(table_id)), job_config=config).result()


def load_hours(client: Any, lake: Lake, table_id: str, plan: LoadPlan) -> list[str]:
    """Run one load job an hour (waiting for each), then record the hour in the loads
    table; returns the job ids."""
    from google.cloud import bigquery

    client.create_table(table_definition(bigquery, table_id), exists_ok=True)
    client.create_table(loads_table_definition(bigquery, table_id), exists_ok=True)
    config = job_config(bigquery)
    job_ids = []
    for load in plan.loads:
        uris = [lake.location.url(path) for path in load.files]
        destination = partition_decorator(table_id, load.hour)
        job = client.load_table_from_uri(uris, destination, job_config=config)
        job.result()
        job_ids.append(str(job.job_id))
        record_load(client, bigquery, table_id, load.hour, load.rows, str(job.job_id))
        lake.write_json(
            loaded_record(table_id, load.hour),
            {
                "hour": load.label,
                "destination": destination,
                "job_id": str(job.job_id),
                "files": len(uris),
                "rows": load.rows,
                "closed": load.closed,
                "manifest_version": load.manifest_version,
                "manifest_updated_at": load.manifest_updated_at,
                "loaded_at": L.utc_now_text(),
            },
        )
        log.info(
            "loaded %s: %d files%s into %s (job %s)",
            load.label,
            len(uris),
            f", {load.rows} rows" if load.rows >= 0 else " (open hour, --force)",
            destination,
            job.job_id,
        )
    return job_ids


@dataclass(frozen=True)
class BigQueryTarget:
    project: str
    dataset: str
    table: str
    location: str | None

    @property
    def table_id(self) -> str:
        return f"{self.project}.{self.dataset}.{self.table}"


def target_from(
    settings: Settings,
    project: str | None = None,
    dataset: str | None = None,
    table: str | None = None,
) -> BigQueryTarget:
    """The table to load into: flags first, then the settings."""
    bq = settings.bigquery
    project = project or bq.project
    dataset = dataset or bq.dataset
    missing = [
        name
        for name, value in (("GOOGLE_CLOUD_PROJECT", project), ("BIGQUERY_DATASET", dataset))
        if not value
    ]
    if missing:
        raise UserError(
            f"set {' and '.join(missing)} (or pass --project/--dataset) to load into BigQuery"
        )
    return BigQueryTarget(
        project=project, dataset=dataset, table=table or bq.table, location=bq.location
    )


def _default_client(target: BigQueryTarget) -> Any:
    try:
        from google.auth.exceptions import DefaultCredentialsError
        from google.cloud import bigquery
    except ImportError:
        raise UserError("google-cloud-bigquery is missing; run `make install`") from None
    try:
        return bigquery.Client(project=target.project, location=target.location)
    except DefaultCredentialsError:
        raise UserError(
            "no Google Cloud credentials: set GOOGLE_APPLICATION_CREDENTIALS to a service "
            "account key file, or run `gcloud auth application-default login`"
        ) from None


CLIENT_FACTORY: Callable[[BigQueryTarget], Any] = _default_client
"""How ``run_bigquery`` gets its client (tests put a recording fake here)."""


@dataclass(frozen=True)
class LoadRequest:
    """What ``antenna-elt load bigquery`` was asked to do (hours as YYYY-MM-DDTHH, UTC)."""

    hour: str | None = None
    since: str | None = None
    until: str | None = None
    force: bool = False
    reload: bool = False
    lake: str | None = None
    project: str | None = None
    dataset: str | None = None
    table: str | None = None
    dry_run: bool = False


def run(request: LoadRequest, settings: Settings) -> int:
    try:
        hour = L.parse_hour(request.hour) if request.hour else None
        since = L.parse_hour(request.since) if request.since else None
        until = L.parse_hour(request.until) if request.until else None
    except ValueError as exc:
        raise UserError(f"{exc}; give hours as YYYY-MM-DDTHH in UTC") from None
    if (hour is None) == (since is None):
        raise UserError("pass either --hour YYYY-MM-DDTHH or --since YYYY-MM-DDTHH")
    if until is not None and since is None:
        raise UserError("--until goes with --since")
    location = LakeLocation.parse(request.lake or settings.lake_uri)
    target = target_from(settings, request.project, request.dataset, request.table)
    if location.scheme != "gs" and not request.dry_run:
        raise UserError(
            f"BigQuery loads Parquet from Cloud Storage only, and the lake is {location.uri}; "
            "set ANTENNA_ELT_LAKE (or --lake) to a gs:// URI, or use --dry-run"
        )
    lake = Lake(location, settings.s3_endpoint)
    plan = plan_loads(
        lake,
        hour=hour,
        since=since,
        until=until,
        force=request.force,
        table_id=target.table_id,
        reload=request.reload,
    )
    for line in plan.skipped:
        log.info("skipped %s", line)
    if request.dry_run:
        for load in plan.loads:
            print(
                f"{load.label}\t{partition_decorator(target.table_id, load.hour)}\t"
                f"{len(load.files)} files\t{load.rows if load.rows >= 0 else '?'} rows\t"
                f"{'closed' if load.closed else 'open'}"
            )
        return 0
    if not plan.loads:
        log.info("nothing to load")
        return 0
    load_hours(CLIENT_FACTORY(target), lake, target.table_id, plan)
    return 0
