"""``antenna-elt lake closed``: questions about the Parquet lake (the hourly DAG's sensor
asks whether an hour is closed)."""

from __future__ import annotations

import argparse
from typing import Any

from antenna_elt.settings import Settings


def hour_start(text: str) -> int:
    from antenna_elt.sinks.lake.layout import parse_hour

    try:
        return parse_hour(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def run_closed(args: argparse.Namespace, settings: Settings) -> int:
    from antenna_elt.sinks.lake import layout
    from antenna_elt.sinks.lake.storage import Lake, LakeLocation

    location = LakeLocation.parse(args.lake or settings.lake_uri)
    manifest = Lake(location, settings.s3_endpoint).read_json(layout.closed_manifest(args.hour))
    label = layout.hour_label(args.hour)
    if manifest is None:
        print(f"hour {label} is not closed yet in {location.uri}")
        return 1
    print(
        f"hour {label} is closed in {location.uri}: {manifest.get('rows')} events in "
        f"{len(manifest.get('files', []))} files (manifest version {manifest.get('version')})"
    )
    return 0


def register(subparsers: Any) -> None:
    lake = subparsers.add_parser(
        "lake",
        help="questions about the Parquet lake (is an hour closed?)",
        description="Look at the lake the lake ingestor writes (ANTENNA_ELT_LAKE or --lake).",
    )
    sub = lake.add_subparsers(dest="lake_command", metavar="COMMAND")
    sub.required = True
    closed = sub.add_parser(
        "closed",
        help="exit 0 if the hour is closed (its manifest exists), 1 if not yet",
        description=(
            "Exit 0 and print its events, files and manifest version if the lake ingestor "
            "has closed the hour; exit 1 if not yet (the hourly DAG's sensor)."
        ),
    )
    closed.add_argument("--hour", type=hour_start, required=True, help="e.g. 2026-11-24T08")
    closed.add_argument("--lake", help="lake location (default: ANTENNA_ELT_LAKE or .stack/lake)")
    closed.set_defaults(func=run_closed)
