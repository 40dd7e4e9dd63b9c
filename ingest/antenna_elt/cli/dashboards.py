"""``antenna-elt dashboards up|down|status``: its arguments; the Superset deployer is
developer tooling, :mod:`antenna_elt.devstack.superset`."""

from __future__ import annotations

import argparse
import time
from typing import Any

from antenna_elt.cli.argtypes import port_number, sql_name
from antenna_elt.settings import DEFAULT_SUPERSET_PORT as DEFAULT_PORT
from antenna_elt.settings import Settings


def _instance(args: argparse.Namespace, settings: Settings) -> Any:
    from antenna_elt.devstack import superset

    port = settings.superset_port if args.port is None else args.port
    return superset.default_instance(settings, port, args.marts_schema or settings.marts_schema)


def _run_up(args: argparse.Namespace, settings: Settings) -> int:
    from antenna_elt.devstack import superset

    started = time.monotonic()
    running = superset.up(settings, _instance(args, settings))
    instance = running.instance
    print(
        f"Superset: {instance.url}/  (user {superset.ADMIN_USER}, password {running.admin_password})"
    )
    for title, slug in running.bundle.dashboards:
        print(f"  {title}: {superset.dashboard_url(instance, slug)}")
    print(f"dashboards up in {time.monotonic() - started:.1f} s")
    return 0


def _run_down(args: argparse.Namespace, settings: Settings) -> int:
    from antenna_elt.devstack import superset

    print(f"dashboards: superset {superset.stop(_instance(args, settings))}", flush=True)
    return 0


def _run_status(args: argparse.Namespace, settings: Settings) -> int:
    from antenna_elt.devstack import superset

    found = superset.status(_instance(args, settings))
    if found is None:
        print("superset: stopped")
        return 1
    state, pid, instance = found
    print(f"superset: {state} (pid {pid}, {instance.url}/, log {instance.logfile})")
    return 0 if state == "running" else 1


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "dashboards",
        help="install, start and stop Superset with the dashboards over the marts",
        description=(
            "Apache Superset on 127.0.0.1 with the dashboards of dashboards/ (imported as "
            "code), reading the marts through a read-only PostgreSQL role. Installed into "
            ".stack/superset/venv, metadata in the `superset` database of the project's "
            "PostgreSQL."
        ),
    )
    sub = parser.add_subparsers(dest="action", metavar="ACTION")
    sub.required = True
    for name, func, help_text in (
        (
            "up",
            _run_up,
            "install (once), start (unless running), import the dashboards, print their URLs",
        ),
        ("down", _run_down, "stop the Superset that `up` started"),
        ("status", _run_status, "show whether Superset runs; exit 1 if not"),
    ):
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.add_argument(
            "--port",
            type=port_number,
            default=None,
            help=f"port on 127.0.0.1 (default: ANTENNA_ELT_SUPERSET_PORT or {DEFAULT_PORT})",
        )
        p.add_argument(
            "--marts-schema",
            type=sql_name("analytics_marts"),
            help="schema of the marts (default: <ANTENNA_ELT_DBT_SCHEMA or analytics>_marts)",
        )
        p.set_defaults(func=func)
