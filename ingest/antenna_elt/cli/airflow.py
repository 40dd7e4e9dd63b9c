"""``antenna-elt airflow up|down|status``: its arguments; the local Airflow is developer
tooling, :mod:`antenna_elt.devstack.airflow`."""

from __future__ import annotations

import argparse
import time
from typing import Any

from antenna_elt.settings import Settings


def _run_up(args: argparse.Namespace, settings: Settings) -> int:
    from antenna_elt.devstack import airflow

    started = time.monotonic()
    instance = airflow.default_instance(settings)
    pid, new, password = airflow.up(settings, instance)
    print(
        f"Airflow {'started' if new else 'already running'} (pid {pid}): {instance.url}/  "
        f"(user {airflow.ADMIN_USER}, password {password}; also in {instance.root / 'admin-password'})"
    )
    print("  DAGs: antenna_elt_speed (every 5 minutes), antenna_elt_hourly (each closed hour)")
    print(f"airflow up in {time.monotonic() - started:.1f} s; logs in {instance.root}")
    return 0


def _run_down(args: argparse.Namespace, settings: Settings) -> int:
    from antenna_elt.devstack import airflow

    pid = airflow.down(airflow.default_instance(settings))
    print(f"airflow: {'stopped (pid ' + str(pid) + ')' if pid else 'not running'}", flush=True)
    return 0


def _run_status(args: argparse.Namespace, settings: Settings) -> int:
    from antenna_elt.devstack import airflow

    instance = airflow.default_instance(settings)
    pid = airflow.status(instance)
    if pid is None:
        print("airflow: stopped")
        return 1
    print(f"airflow: running (pid {pid}, {instance.url}/, log {instance.service().logfile})")
    return 0


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "airflow",
        help="install, start and stop a local Apache Airflow with the project's DAGs",
        description=(
            "Apache Airflow 3.3 with astronomer-cosmos in its own virtualenv under .stack/airflow, "
            "metadata in the project's PostgreSQL, the API server and UI on 127.0.0.1 "
            "(ANTENNA_ELT_AIRFLOW_PORT, 8090), the DAGs of orchestration/airflow/dags."
        ),
    )
    sub = parser.add_subparsers(dest="airflow_command", metavar="COMMAND")
    sub.required = True
    up = sub.add_parser(
        "up", help="install if needed, start (idempotent), print the URL and password"
    )
    up.set_defaults(func=_run_up)
    down = sub.add_parser("down", help="stop it")
    down.set_defaults(func=_run_down)
    status = sub.add_parser("status", help="is it running?")
    status.set_defaults(func=_run_status)
