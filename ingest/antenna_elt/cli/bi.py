"""``antenna-elt looker`` and ``antenna-elt conventions``: the developer tools that keep the
BI layer and the dbt project to the team's rules (:mod:`antenna_elt.devstack.looker`,
:mod:`antenna_elt.devstack.conventions`)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from antenna_elt.errors import UserError
from antenna_elt.settings import PROJECT_ROOT, Settings

TARGETS = ("postgres", "duckdb")


def run_looker(args: argparse.Namespace, settings: Settings) -> int:
    from antenna_elt.devstack.looker.generate import generate

    return generate(args.project_dir, args.out, args.check)


def run_conventions(args: argparse.Namespace, settings: Settings) -> int:
    from antenna_elt.devstack.conventions import check

    artifacts: dict[str, Path] = {}
    for item in args.artifacts:
        target, sep, directory = item.partition("=")
        if not sep or target not in TARGETS:
            raise UserError(f"--artifacts {item!r} is not TARGET=DIR with TARGET one of {TARGETS}")
        artifacts[target] = Path(directory)
    return check(args.project_dir, args.target, artifacts)


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "looker",
        help="generate the LookML project in looker/ from the dbt project (make looker)",
        description=(
            "Write looker/ (views, explores, the two dashboards) from dbt's manifest: models "
            "the dashboard exposures list, their descriptions, declared types, keys and "
            "joins. With --check, write nothing and exit 1 if looker/ has drifted."
        ),
    )
    p.add_argument("--project-dir", type=Path, default=PROJECT_ROOT, help="the dbt project")
    p.add_argument("--out", type=Path, help="where to write (default: <project>/looker)")
    p.add_argument("--check", action="store_true", help="write nothing; exit 1 on drift")
    p.set_defaults(func=run_looker)

    c = subparsers.add_parser(
        "conventions",
        help="check the dbt project against the team's conventions (dbt-bouncer.yml)",
        description=(
            "Run dbt-bouncer with dbt-bouncer.yml on the manifest of each target (dbt parse, "
            "no database) and print test and documentation coverage; exit 1 when a rule is "
            "broken."
        ),
    )
    c.add_argument("--project-dir", type=Path, default=PROJECT_ROOT, help="the dbt project")
    c.add_argument(
        "--target",
        action="append",
        choices=TARGETS,
        help=f"repeatable (default: {', '.join(TARGETS)})",
    )
    c.add_argument(
        "--artifacts",
        metavar="TARGET=DIR",
        action="append",
        default=[],
        help="use this target's manifest.json (and catalog.json) from DIR instead of parsing",
    )
    c.set_defaults(func=run_conventions)
