"""One definition of the landed tables, rendered for PostgreSQL, Arrow and BigQuery and
documented by the dbt source; every setting read from the environment in one place."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pyarrow as pa
import pytest
import yaml

from antenna_elt.errors import UserError
from antenna_elt.load.bigquery import BIGQUERY_SCHEMA
from antenna_elt.schema import EVENTS, REJECTS, arrow_schema, bigquery_fields, postgres_columns
from antenna_elt.settings import PROJECT_ROOT, load_settings
from antenna_elt.sinks.postgres import DDL

SOURCES = PROJECT_ROOT / "models" / "staging" / "_raw__sources.yml"


def test_the_dbt_source_lists_exactly_the_landed_columns() -> None:
    source = next(s for s in yaml.safe_load(SOURCES.read_text())["sources"] if s["name"] == "raw")
    columns = {t["name"]: [c["name"] for c in t["columns"]] for t in source["tables"]}
    assert columns == {EVENTS.name: EVENTS.names, REJECTS.name: REJECTS.names}


def test_every_rendering_has_the_same_columns_in_the_same_order() -> None:
    for table in (EVENTS, REJECTS):
        in_lake = [c.name for c in table.columns if c.in_lake]
        assert arrow_schema(table).names == in_lake
        assert [name for name, _, _ in bigquery_fields(table)] == in_lake
        lines = postgres_columns(table).splitlines()
        assert [line.split()[0] for line in lines if not line.strip().startswith("primary")] == (
            table.names
        )
    assert bigquery_fields(EVENTS) == BIGQUERY_SCHEMA


def test_the_renderings_keep_the_types_the_warehouses_have() -> None:
    utc = pa.timestamp("us", tz="UTC")
    assert arrow_schema(EVENTS) == pa.schema(
        [
            pa.field("event_time", utc, nullable=False),
            pa.field("id", pa.string(), nullable=False),
            pa.field("antenna_id", pa.string(), nullable=False),
            pa.field("bytes", pa.int64(), nullable=False),
            pa.field("app", pa.string(), nullable=False),
            pa.field("kafka_topic", pa.string(), nullable=False),
            pa.field("kafka_partition", pa.int32(), nullable=False),
            pa.field("kafka_offset", pa.int64(), nullable=False),
            pa.field("ingested_at", utc, nullable=False),
        ]
    )
    assert arrow_schema(REJECTS).field("raw_value").nullable
    assert "    bytes           bigint      not null check (bytes >= 0)," in DDL
    assert "    ingested_at     timestamptz not null default now()" in DDL
    assert "    primary key (kafka_topic, kafka_partition, kafka_offset)" in DDL
    assert dict((n, (t, m)) for n, t, m in bigquery_fields(REJECTS))["raw_value"] == (
        "BYTES",
        "NULLABLE",
    )


def test_settings_defaults_point_at_the_local_stack() -> None:
    settings = load_settings({})
    assert settings.kafka_bootstrap_servers == "127.0.0.1:19092"
    passfile = PROJECT_ROOT / ".stack" / "secrets" / "pgpass"
    assert settings.pg_conninfo == (
        f"host=127.0.0.1 port=15432 user=antenna_elt dbname=antenna_elt passfile={passfile}"
    )
    assert settings.pg_child_env == {"PGPASSFILE": str(passfile)}
    assert (settings.raw_schema, settings.marts_schema) == ("raw", "analytics_marts")
    assert (settings.superset_port, settings.s3_endpoint) == (8088, None)
    assert settings.lake_uri == (PROJECT_ROOT / ".stack" / "lake").as_uri()
    assert settings.future_skew == 300


def test_settings_come_from_the_environment() -> None:
    settings = load_settings(
        {
            "ANTENNA_ELT_DBT_SCHEMA": "team",
            "ANTENNA_ELT_RAW_SCHEMA": "landing",
            "AWS_ENDPOINT_URL": "http://127.0.0.1:9000",
            "ANTENNA_ELT_SUPERSET_PORT": "18088",
            "ANTENNA_ELT_DUCKDB_PATH": "w.duckdb",
            "BIGQUERY_DATASET": "ds",
            "KAFKA_BOOTSTRAP_SERVERS": "kafka:9092",
            "ANTENNA_ELT_FUTURE_SKEW": "60",
        }
    )
    assert settings.marts_schema == "team_marts"
    assert settings.raw_schema == "landing"
    assert settings.s3_endpoint == "http://127.0.0.1:9000"
    assert settings.superset_port == 18088
    assert settings.duckdb_path == Path("w.duckdb")
    assert settings.bigquery.dataset == "ds" and settings.bigquery.table == "device_usage"
    assert settings.kafka_external
    assert settings.future_skew == 60


def test_a_bad_port_is_one_line_naming_the_variable() -> None:
    with pytest.raises(UserError, match=r"^ANTENNA_ELT_KAFKA_PORT='x' is not an integer"):
        load_settings({"ANTENNA_ELT_KAFKA_PORT": "x"})
    with pytest.raises(UserError, match=r"^ANTENNA_ELT_SUPERSET_PORT='0' is not a port number"):
        _ = load_settings({"ANTENNA_ELT_SUPERSET_PORT": "0"}).superset_port
    with pytest.raises(UserError, match=r"^ANTENNA_ELT_FUTURE_SKEW=-5 is negative"):
        load_settings({"ANTENNA_ELT_FUTURE_SKEW": "-5"})


def test_the_kafka_client_is_librdkafka_unless_the_environment_names_kafka_python() -> None:
    assert load_settings({}).kafka_client == "librdkafka"
    assert (
        load_settings({"ANTENNA_ELT_KAFKA_CLIENT": "kafka-python"}).kafka_client == "kafka-python"
    )


def test_an_unknown_kafka_client_is_one_line_naming_the_choices() -> None:
    with pytest.raises(
        UserError,
        match=(
            r"^ANTENNA_ELT_KAFKA_CLIENT='confluent' is not one of kafka-python, librdkafka; "
            r"set one or unset it$"
        ),
    ):
        load_settings({"ANTENNA_ELT_KAFKA_CLIENT": "confluent"})


def test_the_kafka_client_flag_overrides_the_setting_and_refuses_unknown_names(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from antenna_elt.cli import build_parser
    from antenna_elt.cli.ingest import loop_options

    parser = build_parser()
    settings = load_settings({"ANTENNA_ELT_KAFKA_CLIENT": "kafka-python"})
    args = parser.parse_args(["ingest", "postgres"])
    assert loop_options(args, settings).client == "kafka-python"
    assert args.flush_when_caught_up is True
    args = parser.parse_args(["ingest", "lake", "--kafka-client", "librdkafka"])
    assert loop_options(args, settings).client == "librdkafka"
    assert args.flush_when_caught_up is False
    with pytest.raises(SystemExit):
        parser.parse_args(["ingest", "lake", "--kafka-client", "rdkafka"])
    assert "argument --kafka-client: invalid choice: 'rdkafka'" in capsys.readouterr().err


def test_the_memory_bounding_defaults() -> None:
    """Peak memory at default settings (bench/clients.py): the fetch buffers of both
    clients and the lake's batch size are the settings that move it."""
    from antenna_elt.cli import build_parser
    from antenna_elt.ingest import kafka_python, librdkafka

    assert kafka_python.CONSUMER_SETTINGS["fetch_max_bytes"] == 4 * 1024 * 1024
    assert kafka_python.CONSUMER_SETTINGS["max_partition_fetch_bytes"] == 1024 * 1024
    config = librdkafka.consumer_config("k:9092", "g")
    assert (config["fetch.max.bytes"], config["max.partition.fetch.bytes"]) == (
        4 * 1024 * 1024,
        1024 * 1024,
    )
    assert config["queued.max.messages.kbytes"] == 2 * 1024
    # a partition whose fetches wait out librdkafka's default fetch.queue.backoff.ms (1 s)
    # each time the small queue is full idles the fetcher (consume-only 103k messages/s
    # against 800k+ at 10 ms: README, Benchmarks)
    assert config["fetch.queue.backoff.ms"] <= 50
    # librdkafka stops fetching a partition once it holds queued.min.messages: that count
    # must not bind before the queue's bytes do, even for the smallest events, or the
    # fetcher idles (at 20,000, consuming fell to a quarter: README, Benchmarks)
    smallest = len(
        json.dumps(
            {"timestamp": 0, "id": str(uuid.UUID(int=0)), "bytes": 0, "app": "A",
             "antenna_id": str(uuid.UUID(int=0))},
            separators=(",", ":"),
        ).encode()
    )  # fmt: skip
    assert config["queued.min.messages"] * smallest >= config["queued.max.messages.kbytes"] * 1024
    parser = build_parser()
    assert parser.parse_args(["ingest", "lake"]).batch_size == 20_000
    assert parser.parse_args(["ingest", "postgres"]).batch_size == 20_000
