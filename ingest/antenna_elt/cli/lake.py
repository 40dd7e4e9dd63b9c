"""``antenna-elt lake closed|compact``: questions about the Parquet lake (the hourly DAG's
sensor asks whether an hour is closed), and compaction of its closed hours."""

from __future__ import annotations

import argparse
from typing import Any

from antenna_elt.cli.argtypes import positive_int
from antenna_elt.cli.ingest import add_compaction_arguments
from antenna_elt.settings import Settings
from antenna_elt.sinks.lake.parquet import ROW_GROUP_ROWS


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


def run_compact(args: argparse.Namespace, settings: Settings) -> int:
    from antenna_elt.sinks.lake import layout
    from antenna_elt.sinks.lake.compaction import Compactor, stop_at
    from antenna_elt.sinks.lake.storage import Lake, LakeLocation

    location = LakeLocation.parse(args.lake or settings.lake_uri)
    compactor = Compactor(
        Lake(location, settings.s3_endpoint),
        target_bytes=(args.compact_target_mib or settings.compact_target_mib) << 20,
        row_group_rows=args.row_group_rows,
        grace=settings.compact_grace if args.compact_grace is None else args.compact_grace,
        step=stop_at(settings.compact_failpoint),
    )
    if args.hour is not None and compactor.manifests.current(args.hour) is None:
        print(
            f"hour {layout.hour_label(args.hour)} is not closed yet in {location.uri}: only "
            "closed hours are compacted"
        )
        return 1
    hours = None if args.hour is None else [args.hour]
    done = compactor.run(hours, dry_run=args.dry_run)
    for result in done:
        print(result.line(dry_run=args.dry_run))
    if not done:
        print(f"nothing to compact in {location.uri}")
    return 0


def register(subparsers: Any) -> None:
    lake = subparsers.add_parser(
        "lake",
        help="questions about the Parquet lake (is an hour closed?), compaction",
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

    compact = sub.add_parser(
        "compact",
        help="rewrite closed hours' small files into few large ones (atomically, exactly once)",
        description=(
            "Rewrite the small Parquet files of closed hours into as few files as the size "
            "target allows; readers switch to them with the hour's next manifest version, "
            "never reading both or neither. Files replaced more than the grace period ago "
            "are deleted. The lake ingestor does this by itself after closing an hour "
            "(unless --no-compact); safe to run beside it."
        ),
    )
    compact.add_argument(
        "--hour",
        type=hour_start,
        help="only this hour, e.g. 2026-11-24T08 (default: all closed hours)",
    )
    compact.add_argument(
        "--dry-run", action="store_true", help="say what would be compacted, change nothing"
    )
    compact.add_argument("--lake", help="lake location (default: ANTENNA_ELT_LAKE or .stack/lake)")
    compact.add_argument(
        "--row-group-rows",
        type=positive_int,
        default=ROW_GROUP_ROWS,
        help="rows per row group of the compacted files (default: 131072)",
    )
    add_compaction_arguments(compact)
    compact.set_defaults(func=run_compact)
