"""``antenna-elt run``: its arguments; the runner is :mod:`antenna_elt.run`."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from antenna_elt.cli.argtypes import duration, non_negative
from antenna_elt.settings import Settings


def run(args: argparse.Namespace, settings: Settings) -> int:
    from antenna_elt.run.runner import Runner, RunOptions

    options = RunOptions(
        speed_interval=args.speed_interval,
        duration=None if args.for_ is None else float(args.for_),
        warehouse=args.warehouse,
        postgres_group=args.postgres_group,
        lake_group=args.lake_group,
        alerts_topic=args.alerts_topic or settings.alerts_topic,
        log_schema=args.log_schema or settings.alert_log_schema,
        freshness=not args.no_freshness,
        test_scope=args.test_scope,
        tests=args.tests,
        test_interval=args.test_interval,
        work_dir=args.work_dir,
    )
    runner = Runner(settings, options)
    runner.install_signal_handlers()
    return runner.run()


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "run",
        help="the pipeline by itself: both ingestors supervised, dbt builds on a cadence, alerts",
        description=(
            "Run the pipeline on one machine until stopped (Ctrl-C, SIGTERM) or for --for: "
            "both ingestors as supervised worker processes (restarted with backoff when one "
            "dies); the speed cycle (an incremental dbt build of the PostgreSQL marts, then "
            "notify), back to back or every --speed-interval, skipped while nothing new was "
            "ingested; beside it the marts' data tests (a dbt test of everything built since "
            "the last one) and dbt source freshness; and the batch cycle (a build of the warehouse target each time the "
            "lake ingestor closes an hour; with --warehouse bigquery, after `load bigquery` "
            "of that hour). One status line per cycle; logs of the workers and of dbt under "
            "<ANTENNA_ELT_HOME>/run/. A failing data test or a stale source is logged loudly "
            "and ingestion goes on."
        ),
    )
    p.add_argument(
        "--for",
        dest="for_",
        type=duration,
        metavar="DURATION",
        help="stop after this long (e.g. 90s, 10m, 2h), then build both targets once more",
    )
    p.add_argument(
        "--speed-interval",
        type=non_negative,
        default=0.0,
        help="seconds from one speed cycle's start to the next (default: 0, back to back)",
    )
    p.add_argument(
        "--warehouse",
        choices=["duckdb", "bigquery", "none"],
        default="duckdb",
        help="the batch layer's dbt target; none: no lake ingestor, no batch cycle (default: duckdb)",
    )
    p.add_argument(
        "--postgres-group",
        default="antenna-elt-postgres",
        help="consumer group of the PostgreSQL ingestor",
    )
    p.add_argument(
        "--lake-group", default="antenna-elt-lake", help="consumer group of the lake ingestor"
    )
    p.add_argument(
        "--alerts-topic",
        help="topic of the quota alerts (default: ANTENNA_ELT_ALERTS_TOPIC or quota-alerts)",
    )
    p.add_argument(
        "--log-schema",
        help="schema of the alert log (default: ANTENNA_ELT_ALERT_LOG_SCHEMA or alerts)",
    )
    p.add_argument("--no-freshness", action="store_true", help="skip dbt source freshness")
    p.add_argument(
        "--test-scope",
        choices=["touched", "all"],
        default="touched",
        help="what the data tests check: the windows the builds touched, or all history (default: touched)",
    )
    p.add_argument(
        "--tests",
        choices=["beside", "in-build"],
        default="beside",
        help="the speed marts' data tests: a dbt test beside the builds, over everything built "
        "since the last one (the marts are published without waiting for them), or in-build: "
        "each dbt build's own, a failing test holding back the models below it (default: beside)",
    )
    p.add_argument(
        "--test-interval",
        type=non_negative,
        default=60.0,
        metavar="SECONDS",
        help="with --tests beside: seconds from one dbt test's start to the next at the least "
        "(each tests every build since the last; fewer leave the cores to the builds; default: 60)",
    )
    p.add_argument(
        "--work-dir",
        type=Path,
        help="where the workers' and dbt's logs go (default: <ANTENNA_ELT_HOME>/run)",
    )
    p.set_defaults(func=run)
