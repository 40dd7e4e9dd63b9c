"""``antenna-elt load bigquery``: its arguments; the loader is
:mod:`antenna_elt.load.bigquery`."""

from __future__ import annotations

import argparse
import dataclasses
from typing import Any

from antenna_elt.settings import Settings


def run_bigquery(args: argparse.Namespace, settings: Settings) -> int:
    from antenna_elt.load import bigquery

    fields = {f.name for f in dataclasses.fields(bigquery.LoadRequest)}
    request = bigquery.LoadRequest(**{k: v for k, v in vars(args).items() if k in fields})
    return bigquery.run(request, settings)


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
