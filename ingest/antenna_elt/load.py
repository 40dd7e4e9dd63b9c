"""``antenna-elt load bigquery``: load closed hours of the lake into BigQuery, idempotently.

Each hour is one load job: the Parquet files the hour's closed-hours manifest lists,
``WRITE_TRUNCATE`` into the partition decorator ``<table>$YYYYMMDDHH`` of a table
partitioned by hour on ``event_time``. Loading an hour again replaces exactly that hour,
so re-runs and late events (which rewrite the manifest) never double anything. Which
hours were loaded, from which manifest version, is recorded under
``<lake>/_manifests/loaded/bigquery/<table>/``; ``--since`` skips hours already loaded
from their current manifest.
"""

from __future__ import annotations

import argparse
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from antenna_elt import lake as L
from antenna_elt.config import Settings
from antenna_elt.errors import UserError

log = logging.getLogger("antenna_elt.load")

HOUR = 3600

# (name, BigQuery type, mode): the lake's columns (sink_lake.event_schema)
BIGQUERY_SCHEMA = (
    ("event_time", "TIMESTAMP", "REQUIRED"),
    ("id", "STRING", "REQUIRED"),
    ("antenna_id", "STRING", "REQUIRED"),
    ("bytes", "INT64", "REQUIRED"),
    ("app", "STRING", "REQUIRED"),
    ("kafka_topic", "STRING", "REQUIRED"),
    ("kafka_partition", "INT64", "REQUIRED"),
    ("kafka_offset", "INT64", "REQUIRED"),
    ("ingested_at", "TIMESTAMP", "REQUIRED"),
)


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


def _hours_in(lake: L.Lake, folder: str) -> list[int]:
    return [L.parse_hour(n.removesuffix(".json")) for n in lake.list(folder) if n.endswith(".json")]


def _open_hour(lake: L.Lake, hour: int) -> HourLoad:
    folder = L.hour_dir(L.EVENTS_TABLE, hour)
    files = [f"{folder}/{n}" for n in lake.list(folder) if n.endswith(".parquet")]
    return HourLoad(hour=hour, files=files, rows=-1, closed=False)


def _closed_hour(lake: L.Lake, hour: int) -> HourLoad | None:
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
    lake: L.Lake,
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


def job_config(bigquery: Any) -> Any:
    """The load job: Parquet, replace the partition, table partitioned by hour."""
    return bigquery.LoadJobConfig(
        source_format=bigquery.SourceFormat.PARQUET,
        write_disposition=bigquery.WriteDisposition.WRITE_TRUNCATE,
        create_disposition=bigquery.CreateDisposition.CREATE_IF_NEEDED,
        time_partitioning=bigquery.TimePartitioning(
            type_=bigquery.TimePartitioningType.HOUR, field="event_time"
        ),
        schema=[
            bigquery.SchemaField(name, kind, mode=mode) for name, kind, mode in BIGQUERY_SCHEMA
        ],
    )


def table_definition(bigquery: Any, table_id: str) -> Any:
    table = bigquery.Table(
        table_id,
        schema=[
            bigquery.SchemaField(name, kind, mode=mode) for name, kind, mode in BIGQUERY_SCHEMA
        ],
    )
    table.time_partitioning = bigquery.TimePartitioning(
        type_=bigquery.TimePartitioningType.HOUR, field="event_time"
    )
    table.description = "Valid device usage events, loaded hour by hour from the Parquet lake."
    return table


def load_hours(client: Any, lake: L.Lake, table_id: str, plan: LoadPlan) -> list[str]:
    """Run one load job an hour (waiting for each); returns the job ids."""
    from google.cloud import bigquery

    client.create_table(table_definition(bigquery, table_id), exists_ok=True)
    config = job_config(bigquery)
    job_ids = []
    for load in plan.loads:
        uris = [lake.location.url(path) for path in load.files]
        destination = partition_decorator(table_id, load.hour)
        job = client.load_table_from_uri(uris, destination, job_config=config)
        job.result()
        job_ids.append(str(job.job_id))
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


def target_from(args: argparse.Namespace, env: dict[str, str]) -> BigQueryTarget:
    project = args.project or env.get("GOOGLE_CLOUD_PROJECT") or ""
    dataset = args.dataset or env.get("BIGQUERY_DATASET") or ""
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
        project=project,
        dataset=dataset,
        table=args.table or env.get("BIGQUERY_TABLE") or "device_usage",
        location=env.get("BIGQUERY_LOCATION") or None,
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


def run_bigquery(args: argparse.Namespace, settings: Settings) -> int:
    try:
        hour = L.parse_hour(args.hour) if args.hour else None
        since = L.parse_hour(args.since) if args.since else None
        until = L.parse_hour(args.until) if args.until else None
    except ValueError as exc:
        raise UserError(f"{exc}; give hours as YYYY-MM-DDTHH in UTC") from None
    if (hour is None) == (since is None):
        raise UserError("pass either --hour YYYY-MM-DDTHH or --since YYYY-MM-DDTHH")
    if until is not None and since is None:
        raise UserError("--until goes with --since")
    location = L.LakeLocation.parse(args.lake or settings.lake_uri)
    target = target_from(args, dict(os.environ))
    if location.scheme != "gs" and not args.dry_run:
        raise UserError(
            f"BigQuery loads Parquet from Cloud Storage only, and the lake is {location.uri}; "
            "set ANTENNA_ELT_LAKE (or --lake) to a gs:// URI, or use --dry-run"
        )
    lake = L.Lake(location)
    plan = plan_loads(
        lake,
        hour=hour,
        since=since,
        until=until,
        force=args.force,
        table_id=target.table_id,
        reload=args.reload,
    )
    for line in plan.skipped:
        log.info("skipped %s", line)
    if args.dry_run:
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


def register(subparsers: Any) -> None:
    load = subparsers.add_parser(
        "load",
        help="load closed hours of the Parquet lake into a warehouse (BigQuery)",
        description="Load the lake's closed hours into a warehouse table.",
    )
    sub = load.add_subparsers(dest="warehouse", metavar="WAREHOUSE")
    sub.required = True
    bq = sub.add_parser(
        "bigquery",
        help="load lake hours into an hour-partitioned BigQuery table, replacing each hour",
        description=(
            "One load job an hour: the Parquet files listed by the hour's closed-hours "
            "manifest (<lake>/_manifests/closed_hours/device_usage/), WRITE_TRUNCATE into "
            "<table>$YYYYMMDDHH of a table partitioned by hour on event_time, so a reload "
            "replaces the hour and never doubles it. Needs a gs:// lake, GOOGLE_CLOUD_PROJECT, "
            "BIGQUERY_DATASET and Google credentials (GOOGLE_APPLICATION_CREDENTIALS or "
            "gcloud application-default login)."
        ),
    )
    which = bq.add_mutually_exclusive_group()
    which.add_argument("--hour", help="load this hour, e.g. 2026-11-24T03 (UTC)")
    which.add_argument(
        "--since", help="load every closed hour from this one on (not yet loaded from its manifest)"
    )
    bq.add_argument("--until", help="with --since: stop before this hour")
    bq.add_argument("--force", action="store_true", help="also load hours that are not closed yet")
    bq.add_argument(
        "--reload",
        action="store_true",
        help="with --since: load hours again even if loaded from their current manifest",
    )
    bq.add_argument("--lake", help="the lake (default: ANTENNA_ELT_LAKE); must be gs://")
    bq.add_argument("--project", help="Google Cloud project (default: GOOGLE_CLOUD_PROJECT)")
    bq.add_argument("--dataset", help="BigQuery dataset (default: BIGQUERY_DATASET)")
    bq.add_argument("--table", help="table name (default: BIGQUERY_TABLE or device_usage)")
    bq.add_argument(
        "--dry-run",
        action="store_true",
        help="print the hours, partitions and files that would load; no BigQuery call",
    )
    bq.set_defaults(func=run_bigquery)
