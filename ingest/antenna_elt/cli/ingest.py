"""``antenna-elt ingest postgres|lake|spark``: the ingestors' command line; the ingestors are
:mod:`antenna_elt.ingest` (the loop) and :mod:`antenna_elt.sinks`."""

from __future__ import annotations

import argparse
import dataclasses
import functools
from typing import Any

from antenna_elt.cli.argtypes import (
    non_negative,
    non_negative_int,
    positive_float,
    positive_int,
    sql_name,
)
from antenna_elt.settings import DEFAULT_KAFKA_CLIENT, KAFKA_CLIENTS, Settings
from antenna_elt.sinks.lake.parquet import ROW_GROUP_ROWS


def add_loop_arguments(
    parser: argparse.ArgumentParser,
    *,
    group: str,
    batch_size: int,
    max_latency: float,
    flush_when_caught_up: bool,
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
        "--flush-when-caught-up",
        action=argparse.BooleanOptionalAction,
        default=flush_when_caught_up,
        help=(
            "also write a batch as soon as the consumer has read everything the topic "
            "holds and the previous write is done: a quiet stream lands within "
            "milliseconds, a backlog still goes in --batch-size batches "
            f"(default: {'on' if flush_when_caught_up else 'off'})"
        ),
    )
    parser.add_argument(
        "--kafka-client",
        choices=KAFKA_CLIENTS,
        help=(
            "the Kafka client library to consume with: kafka-python (pure Python) or "
            "librdkafka (confluent-kafka, C) (default: ANTENNA_ELT_KAFKA_CLIENT or "
            f"{DEFAULT_KAFKA_CLIENT})"
        ),
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
        "--future-skew",
        type=non_negative_int,
        metavar="SECONDS",
        help=(
            "reject events whose time is more than this many seconds after their Kafka "
            "record's time (capped by this machine's clock) as timestamp_in_future "
            "(default: ANTENNA_ELT_FUTURE_SKEW or 300)"
        ),
    )
    parser.add_argument(
        "--log-interval",
        type=positive_float,
        default=10.0,
        help="seconds between progress lines with rate and consumer lag (default: 10)",
    )


def loop_options(args: argparse.Namespace, settings: Settings) -> Any:
    from antenna_elt.ingest.loop import LoopOptions

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
        future_skew=settings.future_skew if args.future_skew is None else args.future_skew,
        client=args.kafka_client or settings.kafka_client,
        flush_when_caught_up=args.flush_when_caught_up,
    )


def _run_loop(sink: Any, options: Any) -> int:
    from antenna_elt.ingest.loop import IngestLoop

    loop = IngestLoop(sink, options)
    loop.install_signal_handlers()
    loop.run()
    return 0


def run_postgres(args: argparse.Namespace, settings: Settings) -> int:
    from antenna_elt.sinks.postgres import PostgresSink

    schema = settings.raw_schema if args.schema is None else args.schema
    sink = functools.partial(PostgresSink, settings.pg_conninfo, schema, args.group)
    return _run_loop(sink, loop_options(args, settings))


def run_lake(args: argparse.Namespace, settings: Settings) -> int:
    from antenna_elt.sinks.lake.sink import LakeSink
    from antenna_elt.sinks.lake.storage import LakeLocation

    lake_uri = args.lake or settings.lake_uri
    LakeLocation.parse(lake_uri)  # a bad URI is a one-line error before connecting
    sink = functools.partial(
        LakeSink,
        lake_uri,
        args.group,
        close_grace=args.close_grace,
        row_group_rows=args.row_group_rows,
        s3_endpoint=settings.s3_endpoint,
        compact=args.compact,
        compact_target_bytes=(args.compact_target_mib or settings.compact_target_mib) << 20,
        compact_grace=settings.compact_grace if args.compact_grace is None else args.compact_grace,
        compact_failpoint=settings.compact_failpoint,
    )
    options = dataclasses.replace(
        loop_options(args, settings), max_batch_bytes=args.max_batch_bytes
    )
    return _run_loop(sink, options)


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
            "Consume the topic (kafka-python or librdkafka) and COPY micro-batches into "
            "<schema>.device_usage and <schema>.device_usage_rejects. The next offset of "
            "every partition is stored in <schema>.ingest_offsets in the same transaction, "
            "and the consumer seeks there on start and rebalance: a crash at any point "
            "loses and duplicates nothing. Connection: libpq PG* variables."
        ),
    )
    add_loop_arguments(
        pg,
        group="antenna-elt-postgres",
        batch_size=20_000,
        max_latency=1.0,
        flush_when_caught_up=True,
    )
    pg.add_argument(
        "--schema",
        type=sql_name("raw"),
        default=None,
        help="landing schema, created if missing (default: ANTENNA_ELT_RAW_SCHEMA or raw)",
    )
    pg.set_defaults(func=run_postgres)

    _register_lake(sub)
    _register_spark(sub)


def _register_lake(sub: Any) -> None:
    """Add ``ingest lake`` to the ``ingest`` subcommands."""
    p = sub.add_parser(
        "lake",
        help="land events as hourly Parquet files in the lake (file://, s3://, gs://), exactly once",
        description=(
            "Consume the topic (kafka-python or librdkafka) and write Parquet under "
            "<lake>/device_usage/year=/month=/day=/hour=/ (event time, UTC), one file per "
            "partition and hour per batch, named <topic>+<partition>+<first>+<last>.parquet; "
            "contract breakers go to <lake>/device_usage_rejects/. Files are written under "
            "temporary names, committed with a per-partition commit record holding the next "
            "offset, then renamed: a crash at any point loses and duplicates nothing. A batch "
            "(so a file) closes at --batch-size messages, --max-batch-bytes or --max-latency "
            "seconds, also when no new events arrive. Hours whose events are complete get a "
            "manifest under <lake>/_manifests/closed_hours/device_usage/."
        ),
    )
    add_loop_arguments(
        p,
        group="antenna-elt-lake",
        # 20,000: the consumer holds two batches as messages (one being read, one being
        # written) and the writer one; 50,000 cost ~80 MiB more peak at the same rate, and
        # compaction merges the extra files of a closed hour (README, Benchmarks)
        batch_size=20_000,
        max_latency=60.0,
        flush_when_caught_up=False,
    )
    p.add_argument(
        "--lake",
        help="lake location: a path or file://, s3://, gs:// URI (default: ANTENNA_ELT_LAKE or .stack/lake)",
    )
    p.add_argument(
        "--max-batch-bytes",
        type=positive_int,
        default=64 * 1024 * 1024,
        help=(
            "also write a batch when its messages add up to this many bytes of JSON "
            "(default: 64 MiB; the Parquet files are about 5 times smaller)"
        ),
    )
    p.add_argument(
        "--close-grace",
        type=non_negative,
        default=600.0,
        help=(
            "seconds of lateness allowed before an hour is closed: an hour closes when every "
            "active partition has seen events this long past its end (default: 600)"
        ),
    )
    p.add_argument(
        "--row-group-rows",
        type=positive_int,
        default=ROW_GROUP_ROWS,
        help="rows per Parquet row group, also of compacted files (default: 131072)",
    )
    add_compaction_arguments(p)
    p.add_argument(
        "--no-compact",
        dest="compact",
        action="store_false",
        help=(
            "do not compact hours after closing them (then run `antenna-elt lake compact` "
            "on a schedule)"
        ),
    )
    p.set_defaults(func=run_lake)


def add_compaction_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of lake compaction (the lake ingestor's and `lake compact`'s)."""
    parser.add_argument(
        "--compact-target-mib",
        type=positive_int,
        default=None,
        help=(
            "size of a compacted file in MiB: a closed hour's small files are rewritten "
            "into as few files of at most this size as possible "
            "(default: ANTENNA_ELT_COMPACT_TARGET_MIB or 128)"
        ),
    )
    parser.add_argument(
        "--compact-grace",
        type=non_negative,
        default=None,
        help=(
            "seconds a file replaced by compaction is kept, so that a build that started "
            "before the compaction can still read it; longer than your longest dbt build "
            "(default: ANTENNA_ELT_COMPACT_GRACE or 3600)"
        ),
    )


def run_spark(args: argparse.Namespace, settings: Settings) -> int:
    from antenna_elt.sinks.lake.storage import LakeLocation
    from antenna_elt.spark.session import get_session
    from antenna_elt.spark.stream import SparkIngest, StreamOptions, kafka_partitions

    topic = args.topic or settings.topic
    # before starting a JVM: Spark's source waits forever on an unreachable broker
    kafka_partitions(settings.kafka_bootstrap_servers, topic)
    group = args.group or f"antenna-elt-{args.sink}"
    writer: Any
    if args.sink == "lake":
        from antenna_elt.spark.lake import LakeBatchWriter, LakeConfig

        lake_uri = args.lake or settings.lake_uri
        LakeLocation.parse(lake_uri)
        config = LakeConfig(
            lake_uri,
            group,
            close_grace=args.close_grace,
            row_group_rows=args.row_group_rows,
            s3_endpoint=settings.s3_endpoint,
        )
        writer = LakeBatchWriter(config, topic)
    else:
        from antenna_elt.spark.postgres import PostgresBatchWriter

        schema = settings.raw_schema if args.schema is None else args.schema
        writer = PostgresBatchWriter(settings.pg_conninfo, schema, group, topic)
    checkpoint = args.checkpoint or f"{settings.spark_checkpoints}/{args.sink}-{group}-{topic}"
    options = StreamOptions(
        topic=topic,
        bootstrap_servers=settings.kafka_bootstrap_servers,
        checkpoint=checkpoint,
        trigger_seconds=args.trigger_interval,
        available_now=args.available_now,
        max_offsets_per_trigger=args.max_offsets_per_trigger,
        log_interval=args.log_interval,
    )
    spark = get_session(
        submitted=settings.spark_submitted,
        master=args.master or settings.spark_master,
        app_name=f"antenna-elt ingest spark ({args.sink})",
    )
    try:
        job = SparkIngest(spark, writer, options)
        job.install_signal_handlers()
        job.run()
    finally:
        if not settings.spark_submitted:
            spark.stop()
    return 0


def _register_spark(sub: Any) -> None:
    """Add ``ingest spark`` to the ``ingest`` subcommands."""
    p = sub.add_parser(
        "spark",
        help="the same ingestion as a Spark Structured Streaming job (local or spark-submit)",
        description=(
            "Read the topic with Spark's Kafka source and land every micro-batch exactly once "
            "with the same contract and outputs as `ingest lake` (default) or `ingest "
            "postgres` (--sink postgres): executors validate and write, the driver commits "
            "with the Python sinks' own protocol (lake commit records; offsets stored with "
            "the rows). Spark's checkpoint keeps the Kafka offsets; a killed job restarts "
            "from it and its replayed micro-batch adds nothing twice. Runs a local Spark "
            "(--master, ANTENNA_ELT_SPARK_MASTER, local[2]) or, under spark-submit "
            "(ingest/antenna_elt/cli/spark_submit.py), the cluster's."
        ),
    )
    p.add_argument(
        "--sink",
        choices=["lake", "postgres"],
        default="lake",
        help="where micro-batches land (default: lake)",
    )
    p.add_argument("--topic", help="topic to consume (default: ANTENNA_ELT_TOPIC or devices)")
    p.add_argument(
        "--group",
        help=(
            "the writer's identity in the sink's offsets (lake commit log, ingest_offsets); "
            "default antenna-elt-lake / antenna-elt-postgres, the same as the Python "
            "ingestors, so either engine resumes where the other stopped (never run both)"
        ),
    )
    p.add_argument(
        "--checkpoint",
        help=(
            "Spark's checkpoint location (default: ANTENNA_ELT_SPARK_CHECKPOINTS or "
            ".stack/spark/checkpoints, + /<sink>-<group>-<topic>)"
        ),
    )
    p.add_argument(
        "--trigger-interval",
        type=positive_float,
        default=10.0,
        help="seconds between micro-batches of a running job (default: 10)",
    )
    p.add_argument(
        "--available-now",
        "--until-caught-up",
        dest="available_now",
        action="store_true",
        help="process what the topic holds at start, in micro-batches, then stop (batch runs, tests)",
    )
    p.add_argument(
        "--max-offsets-per-trigger",
        type=positive_int,
        default=100_000,
        help="messages per micro-batch at most (default: 100000)",
    )
    p.add_argument(
        "--master",
        help="Spark master when not under spark-submit (default: ANTENNA_ELT_SPARK_MASTER or local[2])",
    )
    p.add_argument(
        "--lake",
        help="lake location: a path or file://, s3://, gs:// URI (default: ANTENNA_ELT_LAKE or .stack/lake)",
    )
    p.add_argument(
        "--close-grace",
        type=non_negative,
        default=600.0,
        help="seconds of lateness allowed before an hour is closed (default: 600)",
    )
    p.add_argument(
        "--row-group-rows",
        type=positive_int,
        default=ROW_GROUP_ROWS,
        help="rows per Parquet row group (default: 131072)",
    )
    p.add_argument(
        "--schema",
        type=sql_name("raw"),
        default=None,
        help="with --sink postgres: landing schema (default: ANTENNA_ELT_RAW_SCHEMA or raw)",
    )
    p.add_argument(
        "--log-interval",
        type=positive_float,
        default=10.0,
        help="seconds between progress lines (default: 10)",
    )
    p.set_defaults(func=run_spark)
