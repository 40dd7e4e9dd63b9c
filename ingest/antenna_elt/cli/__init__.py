"""The ``antenna-elt`` command: one CLI, a subcommand per job, ``--help`` on each.

This package is the only place that parses arguments: every command module here exposes
``register(subparsers)``, which adds its parser and sets ``func(args, settings) -> int``,
a thin function that calls plain functions of the product packages (or of
:mod:`antenna_elt.devstack` for the local stack and Superset). They import those inside
functions so that ``--help`` stays instant.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
import time
from collections.abc import Sequence
from typing import NoReturn

from antenna_elt import __version__
from antenna_elt.errors import UserError
from antenna_elt.settings import load_settings

SUBCOMMAND_MODULES = (
    "antenna_elt.cli.stack",
    "antenna_elt.cli.simulate",
    "antenna_elt.cli.ingest",
    "antenna_elt.cli.report",
    "antenna_elt.cli.load",
    "antenna_elt.cli.alerts",
    "antenna_elt.cli.dashboards",
    "antenna_elt.cli.bi",
    "antenna_elt.cli.run",
    "antenna_elt.cli.lake",
    "antenna_elt.cli.airflow",
)


class OneLineErrorParser(argparse.ArgumentParser):
    """Bad arguments give one line naming the fix, not the whole usage block."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineErrorParser(
        prog="antenna-elt",
        description="Mobile-network usage ELT: local stack, traffic simulator, ingestors, alerts.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument(
        "--log-level",
        default="INFO",
        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
        help="log verbosity (default: INFO)",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name in SUBCOMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:  # a part not built yet must not break the rest
            if exc.name != name:
                raise
            continue
        module.register(sub)
    return parser


def configure_logging(level: str) -> None:
    logging.Formatter.converter = time.gmtime
    logging.basicConfig(
        level=level,
        format="%(asctime)sZ %(levelname)s %(name)s: %(message)s",
        datefmt="%Y-%m-%dT%H:%M:%S",
        stream=sys.stderr,
    )
    # kafka-python logs every failed reconnect at ERROR (dozens a second while a broker
    # restarts); our own lines say what matters. --log-level DEBUG shows the client's too.
    logging.getLogger("kafka").setLevel(logging.DEBUG if level == "DEBUG" else logging.CRITICAL)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    configure_logging(args.log_level)
    try:
        settings = load_settings()
        return int(args.func(args, settings) or 0)
    except UserError as exc:
        print(f"antenna-elt: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("antenna-elt: interrupted", file=sys.stderr)
        return 130
