"""The fixed-seed simulated run that test_dbt_marts.py and test_spark.py share: one topic,
the PostgreSQL ingestor's staging, the lake ingestor's lake, and the marts dbt builds from
them on PostgreSQL and DuckDB (session fixtures in conftest.py)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
from conftest import run_cli
from helpers import ingest_until_caught_up, unique_group
from lake_helpers import ingest_lake

from antenna_elt.dbt import query_duckdb, query_postgres, run_dbt
from antenna_elt.settings import Settings
from antenna_elt.sim import ledger as ledger_module

START = "2026-11-24T08:00:00Z"
SIM_ARGS = (
    "--start", START, "--duration", "2h", "--count", "30000", "--seed", "11",
    "--malformed-share", "0.01", "--duplicate-share", "0.02", "--late-share", "0.05", "--late-max", "30m",
)  # fmt: skip
MARTS = ("bytes", "bytes_hourly", "user_quota_limit")


@dataclass
class Run:
    settings: Settings
    topic: str
    raw_schema: str
    ledger: ledger_module.Ledger
    tmp: Path
    prefix: str
    """Of the schemas its builds write (unique: pytest's tmp folder names repeat on each
    xdist worker)."""


def rounded(rows: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    return [tuple(round(v, 9) if isinstance(v, float) else v for v in row) for row in rows]


def naive(moment: datetime) -> datetime:
    return moment.astimezone(UTC).replace(tzinfo=None)


def dbt_env(run: Run, schema: str, duckdb_path: Path | None = None) -> dict[str, str]:
    return {
        "ANTENNA_ELT_DBT_SCHEMA": schema,
        "ANTENNA_ELT_DUCKDB_PATH": str(duckdb_path or run.tmp / "warehouse.duckdb"),
        "ANTENNA_ELT_LAKE": (run.tmp / "lake").as_uri(),
    }


def dbt_build(run: Run, schema: str, target: str = "postgres", *extra: str) -> None:
    run_dbt(
        ["build", "--target", target, "--vars", f"{{raw_schema: {run.raw_schema}}}", *extra],
        env=dbt_env(run, schema),
    )


def mart_rows(run: Run, target: str, schema: str, mart: str) -> list[tuple[Any, ...]]:
    sql = f"select * from {schema}_marts.{mart} order by 1, 2, 3, 4"
    if target == "postgres":
        return query_postgres(run.settings.pg_conninfo, sql)
    return query_duckdb(run.tmp / "warehouse.duckdb", sql)


def simulated_run(settings: Settings, tmp: Path) -> Iterator[Run]:
    from kafka.admin import KafkaAdminClient, NewTopic

    topic, raw_schema = f"marts-{uuid.uuid4().hex[:8]}", f"raw_{uuid.uuid4().hex[:8]}"
    admin = KafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap_servers)
    admin.create_topics([NewTopic(topic, 3, 1)])
    proc = run_cli(
        "simulate", "--topic", topic, "--ledger", str(tmp / "ledger.json"), "--quiet", *SIM_ARGS
    )
    assert proc.returncode == 0, proc.stderr
    ingest_until_caught_up(settings, topic, raw_schema, unique_group())
    # the batch layer: the same topic through `ingest lake` (its own consumer group)
    ingest_lake(settings, topic, (tmp / "lake").as_uri(), unique_group())
    prefix = f"marts_{uuid.uuid4().hex[:8]}"
    run = Run(settings, topic, raw_schema, ledger_module.load(tmp / "ledger.json"), tmp, prefix)
    try:
        yield run
    finally:
        admin.delete_topics([topic])
        admin.close()
        with psycopg.connect(settings.pg_conninfo, autocommit=True) as conn:
            for row in conn.execute(
                "select nspname from pg_namespace where nspname like %s or nspname = %s",
                (f"{prefix}%", raw_schema),
            ).fetchall():
                conn.execute(f"drop schema {row[0]} cascade")


def build_postgres_marts(simulated: Run) -> str:
    schema = f"{simulated.prefix}_pg"
    dbt_build(simulated, schema)
    return schema


def build_duckdb_marts(simulated: Run) -> str:
    schema = f"{simulated.prefix}_duck"
    dbt_build(simulated, schema, "duckdb")
    return schema
