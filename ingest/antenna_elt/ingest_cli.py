"""``antenna-elt ingest postgres|lake``: the ingestors' command line."""

from __future__ import annotations

import argparse
import functools
import os
import re
from typing import Any

from antenna_elt.argtypes import positive_float, positive_int
from antenna_elt.config import Settings
from antenna_elt.errors import UserError

_IDENTIFIER = re.compile(r"[a-z_][a-z0-9_]{0,62}")


def add_loop_arguments(
    parser: argparse.ArgumentParser, *, group: str, batch_size: int, max_latency: float
) -> None:
    """Options every ingestor shares (the consume, batch, commit loop)."""
    parser.add_argument("--topic", help="topic to consume (default: ANTENNA_ELT_TOPIC or devices)")
    parser.add_argument("--group", default=group, help=f"consumer group id (default: {group})")
    parser.add_argument(
        "--batch-size",
        type=positive_int,
        default=batch_size,
        help=f"write a batch when it holds this many messages (default: {batch_size})",
    )
    parser.add_argument(
        "--max-latency",
        type=positive_float,
        default=max_latency,
        help=f"write a batch when its oldest message is this many seconds old (default: {max_latency:g})",
    )
    parser.add_argument(
        "--until-caught-up",
        action="store_true",
        help=(
            "stop once every partition reaches the end offset it had at start (batch runs, "
            "tests); fails if Kafka is unreachable or nothing moves for 10 minutes"
        ),
    )
    parser.add_argument(
        "--max-messages",
        type=positive_int,
        help="stop after this many messages, events plus rejects",
    )
    parser.add_argument(
        "--log-interval",
        type=positive_float,
        default=10.0,
        help="seconds between progress lines with rate and consumer lag (default: 10)",
    )


def loop_options(args: argparse.Namespace, settings: Settings) -> Any:
    from antenna_elt.consume import LoopOptions

    return LoopOptions(
        topic=args.topic or settings.topic,
        group_id=args.group,
        bootstrap_servers=settings.kafka_bootstrap_servers,
        batch_size=args.batch_size,
        max_latency=args.max_latency,
        until_caught_up=args.until_caught_up,
        max_messages=args.max_messages,
        log_interval=args.log_interval,
        # a bounded run must end: give up when nothing moves for 10 minutes
        idle_timeout=600.0 if args.until_caught_up else None,
    )


def run_postgres(args: argparse.Namespace, settings: Settings) -> int:
    from antenna_elt.consume import IngestLoop
    from antenna_elt.sink_postgres import PostgresSink

    if not _IDENTIFIER.fullmatch(args.schema):
        raise UserError(
            f"--schema {args.schema!r} is not a plain lower-case SQL identifier; use e.g. raw"
        )
    sink = functools.partial(PostgresSink, settings.pg_conninfo, args.schema, args.group)
    loop = IngestLoop(sink, loop_options(args, settings))
    loop.install_signal_handlers()
    loop.run()
    return 0


def register(subparsers: Any) -> None:
    ingest = subparsers.add_parser(
        "ingest",
        help="consume the devices topic into PostgreSQL or the Parquet lake",
        description="Consume contract events from Kafka and land them exactly once.",
    )
    sub = ingest.add_subparsers(dest="sink", metavar="SINK")
    sub.required = True

    pg = sub.add_parser(
        "postgres",
        help="land events in PostgreSQL raw.device_usage (+ rejects), exactly once",
        description=(
            "Consume the topic with kafka-python and COPY micro-batches into "
            "<schema>.device_usage and <schema>.device_usage_rejects. The next offset of "
            "every partition is stored in <schema>.ingest_offsets in the same transaction, "
            "and the consumer seeks there on start and rebalance: a crash at any point "
            "loses and duplicates nothing. Connection: libpq PG* variables."
        ),
    )
    add_loop_arguments(pg, group="antenna-elt-postgres", batch_size=20_000, max_latency=1.0)
    pg.add_argument(
        "--schema",
        default=os.environ.get("ANTENNA_ELT_RAW_SCHEMA", "raw"),
        help="landing schema, created if missing (default: ANTENNA_ELT_RAW_SCHEMA or raw)",
    )
    pg.set_defaults(func=run_postgres)

    from antenna_elt import sink_lake

    sink_lake.register(sub)
