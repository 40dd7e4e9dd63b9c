"""The dbt marts against the simulator's ledger, across targets, and incremental builds.

A fixed-seed simulated run (with malformed, duplicated and late events) goes through the
real Kafka broker into both ingestors: the PostgreSQL ingestor (speed layer) and the lake
ingestor (hourly Parquet, batch layer). `dbt build` runs on PostgreSQL over staging and on
DuckDB over the lake the lake ingestor wrote, and the two must agree row for row.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
import pytest
from conftest import run_cli
from helpers import ingest_until_caught_up, unique_group
from lake_helpers import ingest_lake, read_lake

from antenna_elt.dbt import query_duckdb, query_postgres, run_dbt
from antenna_elt.settings import Settings
from antenna_elt.sim import ledger as ledger_module
from antenna_elt.sim.users import load_users

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


@pytest.fixture(scope="module")
def simulated(settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Run]:
    from kafka.admin import KafkaAdminClient, NewTopic

    tmp = tmp_path_factory.mktemp("marts")
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
    run = Run(settings, topic, raw_schema, ledger_module.load(tmp / "ledger.json"), tmp)
    try:
        yield run
    finally:
        admin.delete_topics([topic])
        admin.close()
        with psycopg.connect(settings.pg_conninfo, autocommit=True) as conn:
            for row in conn.execute(
                "select nspname from pg_namespace where nspname like %s or nspname = %s",
                (f"{tmp.name}%", raw_schema),
            ).fetchall():
                conn.execute(f"drop schema {row[0]} cascade")


@pytest.fixture(scope="module")
def postgres_marts(simulated: Run) -> str:
    schema = f"{simulated.tmp.name}_pg".replace("-", "_")
    dbt_build(simulated, schema)
    return schema


def test_staged_events_equal_the_ledger(simulated: Run) -> None:
    ledger = simulated.ledger
    rows = query_postgres(
        simulated.settings.pg_conninfo,
        f"select count(*), count(distinct (event_time, id, antenna_id, app, bytes)) from {simulated.raw_schema}.device_usage",
    )
    assert rows == [
        (ledger.counters["events"] + ledger.counters["duplicates"], ledger.counters["events"])
    ]
    rejects = query_postgres(
        simulated.settings.pg_conninfo,
        f"select reason, count(*) from {simulated.raw_schema}.device_usage_rejects group by 1",
    )
    assert dict(rejects) == dict(ledger.malformed_by_kind)
    for dimension, column in (
        ("antenna", "antenna_id::text"),
        ("user", "id::text"),
        ("app", "app"),
    ):
        staged = query_postgres(
            simulated.settings.pg_conninfo,
            f"select date_trunc('hour', event_time), {column}, sum(bytes)::bigint from "
            f"(select distinct event_time, id, antenna_id, app, bytes from {simulated.raw_schema}.device_usage) e "
            "group by 1, 2",
        )
        assert {(h, k): v for h, k, v in staged} == ledger.bytes_by("hour", dimension)


def test_bytes_equals_the_ledger_per_window(simulated: Run, postgres_marts: str) -> None:
    rows = mart_rows(simulated, "postgres", postgres_marts, "bytes")
    kinds = {"antenna_bytes_total": "antenna", "id_bytes_total": "user", "app_bytes_total": "app"}
    for kind, dimension in kinds.items():
        served = {(ts, key): value for ts, key, value, t in rows if t == kind}
        expected = {
            (naive(ts), key): v
            for (ts, key), v in simulated.ledger.bytes_by("window", dimension).items()
        }
        assert served == expected, kind
    assert {t for *_, t in rows} == set(kinds)


def test_bytes_hourly_equals_the_ledger_per_hour(simulated: Run, postgres_marts: str) -> None:
    rows = mart_rows(simulated, "postgres", postgres_marts, "bytes_hourly")
    emails = {u.id: u.email for u in load_users()}
    ledger = simulated.ledger
    antenna = {(naive(ts), k): v for (ts, k), v in ledger.bytes_by("hour", "antenna").items()}
    app = {(naive(ts), k): v for (ts, k), v in ledger.bytes_by("hour", "app").items()}
    mail = {
        (naive(ts), emails[k]): v
        for (ts, k), v in ledger.bytes_by("hour", "user").items()
        if k in emails
    }
    assert {(ts, k): v for ts, k, v, t in rows if t == "antenna_bytes_total"} == antenna
    assert {(ts, k): v for ts, k, v, t in rows if t == "app_bytes_total"} == app
    assert {(ts, k): v for ts, k, v, t in rows if t == "mail_bytes_total"} == mail
    # unknown devices are missing from the emails only, not from the antenna totals
    assert ledger.unknown_devices
    assert sum(antenna.values()) == ledger.total_bytes


def test_user_quota_limit_lists_exactly_the_ledgers_breaches(
    simulated: Run, postgres_marts: str
) -> None:
    rows = mart_rows(simulated, "postgres", postgres_marts, "user_quota_limit")
    expected = {
        (email, naive(hour), usage, quota)
        for email, hour, usage, quota in simulated.ledger.breaches()
    }
    assert expected, "the simulated run has breaches"
    assert sorted(rows) == sorted((e, u, q, h) for e, h, u, q in expected)


def test_the_lake_holds_exactly_the_ledgers_events(simulated: Run) -> None:
    ledger = simulated.ledger
    events = read_lake(simulated.tmp / "lake")
    rejects = read_lake(simulated.tmp / "lake", "device_usage_rejects")
    assert events.num_rows == ledger.counters["events"] + ledger.counters["duplicates"]
    reasons: dict[str, int] = {}
    for reason in rejects.column("reason").to_pylist():
        reasons[reason] = reasons.get(reason, 0) + 1
    assert reasons == dict(ledger.malformed_by_kind)
    distinct = {
        (row["event_time"], row["id"], row["antenna_id"], row["app"], row["bytes"])
        for row in events.select(["event_time", "id", "antenna_id", "app", "bytes"]).to_pylist()
    }
    assert len(distinct) == ledger.counters["events"]
    for dimension, column in (("antenna", "antenna_id"), ("user", "id"), ("app", "app")):
        totals: dict[tuple[datetime, str], int] = {}
        for event_time, dev, antenna, app, nbytes in distinct:
            key = (
                event_time.replace(minute=0, second=0, microsecond=0),
                {"antenna_id": antenna, "id": dev, "app": app}[column],
            )
            totals[key] = totals.get(key, 0) + nbytes
        assert totals == ledger.bytes_by("hour", dimension), dimension


@pytest.fixture(scope="module")
def duckdb_marts(simulated: Run) -> str:
    schema = f"{simulated.tmp.name}_duck".replace("-", "_")
    dbt_build(simulated, schema, "duckdb")
    return schema


def test_duckdb_over_the_lake_builds_the_same_marts_as_postgres(
    simulated: Run, postgres_marts: str, duckdb_marts: str
) -> None:
    schema = duckdb_marts
    for mart in MARTS:
        assert mart_rows(simulated, "duckdb", schema, mart) == mart_rows(
            simulated, "postgres", postgres_marts, mart
        ), mart
    # the analyst marts too (floats rounded to 9 digits)
    for mart in (
        "fct_network_activity_windowed",
        "fct_antenna_bandwidth_windowed",
        "fct_quota_breaches",
    ):
        duck = mart_rows(simulated, "duckdb", schema, mart)
        pg = mart_rows(simulated, "postgres", postgres_marts, mart)
        assert rounded(duck) == rounded(pg), mart


def test_duckdb_lists_the_hours_the_lake_ingestor_closed(simulated: Run, duckdb_marts: str) -> None:
    """Events run from 07:30 (late ones) to 09:59; an hour closes once the watermark is 10
    minutes past its end, so 07:00 and 08:00 are closed and 09:00 is still open."""
    events = read_lake(simulated.tmp / "lake")
    per_hour: dict[datetime, int] = {}
    for moment in events.column("event_time").to_pylist():
        hour = naive(moment.replace(minute=0, second=0, microsecond=0))
        per_hour[hour] = per_hour.get(hour, 0) + 1
    closed = mart_rows(simulated, "duckdb", duckdb_marts, "dim_closed_hours")
    hours = [datetime(2026, 11, 24, 7), datetime(2026, 11, 24, 8)]
    assert [(row[0], row[1]) for row in closed] == [(h, per_hour[h]) for h in hours]
    assert datetime(2026, 11, 24, 9) in per_hour


def test_bigquery_target_parses_without_credentials(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GOOGLE_")}
    proc = run_dbt(
        ["parse", "--target", "bigquery", "--no-partial-parse", "--target-path", str(tmp_path)],
        env=env,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout[-3000:]
