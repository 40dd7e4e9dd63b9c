"""``antenna-elt stack up|down|status``: its arguments; the local stack is developer
tooling, :mod:`antenna_elt.devstack.stack`."""

from __future__ import annotations

import argparse
import shlex
import time
from typing import Any

from antenna_elt.settings import Settings


def _run_up(args: argparse.Namespace, settings: Settings) -> int:
    from antenna_elt.devstack.stack import ensure_up

    started = time.monotonic()
    for line in ensure_up(settings):
        print(line, flush=True)
    print(f"stack up in {time.monotonic() - started:.1f} s")
    return 0


def _run_down(args: argparse.Namespace, settings: Settings) -> int:
    from antenna_elt.devstack.stack import stop

    for line in stop(settings):
        print(line)
    return 0


def _run_status(args: argparse.Namespace, settings: Settings) -> int:
    from antenna_elt.devstack.stack import status

    components = status(settings)
    for component in components:
        print(component.line())
    return 0 if all(c.state in ("running", "external") for c in components) else 1


def _run_env(args: argparse.Namespace, settings: Settings) -> int:
    from antenna_elt.dbt import profiles_dir

    print(f"export DBT_PROFILES_DIR={shlex.quote(str(profiles_dir()))}")
    passfile = settings.pg_child_env.get("PGPASSFILE")
    if passfile:
        print(f"export PGPASSFILE={shlex.quote(passfile)}")
        port, user, db = settings.pg_port, settings.pg_env["PGUSER"], settings.pg_env["PGDATABASE"]
        print(f"# psql -h 127.0.0.1 -p {port} -U {user} {db}  (no password to type)")
    else:
        print("# PGHOST/PGPORT name your own server: its password is yours (PGPASSWORD, ~/.pgpass)")
    return 0


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "stack",
        help="start, stop or show the local Kafka broker and PostgreSQL server",
        description=(
            "The local stack: a single-node KRaft Kafka broker (jars from Maven Central) and a "
            "PostgreSQL 16 server, on 127.0.0.1, data under ANTENNA_ELT_HOME (.stack/). "
            "KAFKA_BOOTSTRAP_SERVERS or PGHOST/PGPORT point at servers of your own instead."
        ),
    )
    sub = parser.add_subparsers(dest="action", metavar="ACTION")
    sub.required = True
    up = sub.add_parser(
        "up",
        help="start what is not running and wait until it answers (a no-op when all run)",
        description="Start Kafka and PostgreSQL if needed, create the events topic, wait for both.",
    )
    up.set_defaults(func=_run_up)
    down = sub.add_parser(
        "down",
        help="stop the Kafka and PostgreSQL that `up` started (data is kept)",
        description="Stop only what this stack started; external servers are left alone.",
    )
    down.set_defaults(func=_run_down)
    st = sub.add_parser(
        "status",
        help="one line per component; exit 1 if one is stopped or unreachable",
        description="Show whether Kafka and PostgreSQL run, with pid, address and data directory.",
    )
    st.set_defaults(func=_run_status)
    env = sub.add_parser(
        "env",
        help='shell lines for dbt and psql: eval "$(antenna-elt stack env)"',
        description=(
            "Print export lines that point dbt at the project's profile (DBT_PROFILES_DIR) and "
            "libpq at the local PostgreSQL's generated password file (PGPASSFILE), so that "
            "dbt and psql log in without a password on the command line or in the environment."
        ),
    )
    env.set_defaults(func=_run_env)
