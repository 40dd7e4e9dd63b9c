"""``antenna-elt report``: its arguments; the report is :mod:`antenna_elt.report`."""

from __future__ import annotations

import argparse
from datetime import datetime
from typing import Any

from antenna_elt.settings import Settings


def run(args: argparse.Namespace, settings: Settings) -> int:
    from antenna_elt import report

    return report.run(settings, args.hour, args.top, args.ledger)


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "report",
        help="print top antennas, apps, quota breaches and network activity from the marts",
        description=(
            "Read the PostgreSQL marts (schema <ANTENNA_ELT_DBT_SCHEMA>_marts) and print the newest "
            "hour's top antennas and apps, its quota breaches and the last windows of network "
            "activity. With --ledger, also check the marts against a simulator ledger."
        ),
    )
    p.add_argument(
        "--hour",
        type=lambda s: datetime.fromisoformat(s.replace("Z", "")),
        help="hour to show, e.g. 2026-11-24T10:00 (default: the newest)",
    )
    p.add_argument("--top", type=int, default=5, help="rows in the top lists (default: 5)")
    p.add_argument(
        "--ledger", help="a simulator ledger to check the marts against; exit 1 on a difference"
    )
    p.set_defaults(func=run)
