"""The Airflow DAGs (orchestration/airflow/dags), run for real: Airflow 3.3 with cosmos in its
own virtualenv (installed once under .stack/airflow/venv), `airflow dags test` of each DAG
over a fixed-seed simulated hour on the local stack. The speed DAG leaves the PostgreSQL
marts equal to the ledger and the alerts in Kafka; the hourly DAG waits for the closed hour
and leaves the DuckDB marts over the lake equal to the ledger."""

from __future__ import annotations

import json
import os
import subprocess
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import psycopg
import pytest
from conftest import run_cli
from helpers import ingest_until_caught_up, json_messages, unique_group
from lake_helpers import ingest_lake

from antenna_elt.dbt import query_duckdb, query_postgres
from antenna_elt.devstack import airflow
from antenna_elt.settings import PROJECT_ROOT, Settings, load_settings
from antenna_elt.sim import ledger as ledger_module
from antenna_elt.sim.users import load_users

HOUR = "2026-11-23T10"


@dataclass
class Deployment:
    settings: Settings
    instance: airflow.Instance
    env: dict[str, str]
    ledger: ledger_module.Ledger
    dbt_schema: str
    alerts_topic: str
    seconds: dict[str, float]


@pytest.fixture(scope="module")
def deployment(
    settings: Settings, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Deployment]:
    from kafka.admin import KafkaAdminClient, NewTopic

    tmp = tmp_path_factory.mktemp("airflow")
    tag = uuid.uuid4().hex[:8]
    topic, alerts = f"af-{tag}", f"af-alerts-{tag}"
    raw, dbt_schema, log_schema = f"af_raw_{tag}", f"af_{tag}", f"af_alerts_{tag}"
    admin = KafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap_servers)
    admin.create_topics([NewTopic(topic, 3, 1), NewTopic(alerts, 1, 1)])
    # the simulated hour 10:00-11:00, and 11:00-11:20 so that the lake closes 10:00
    ledger_path = tmp / "ledger.json"
    proc = run_cli("simulate", "--topic", topic, "--ledger", str(ledger_path), "--quiet",
                   "--start", f"{HOUR}:00:00Z", "--duration", "80m", "--count", "16000", "--seed", "61",
                   "--duplicate-share", "0.02", "--late-share", "0.03", "--late-max", "20m")  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    lake = tmp / "lake"
    ingest_until_caught_up(settings, topic, raw, unique_group())
    ingest_lake(settings, topic, lake.as_uri(), unique_group())
    overrides = {
        "ANTENNA_ELT_TOPIC": topic,
        "ANTENNA_ELT_RAW_SCHEMA": raw,
        "ANTENNA_ELT_DBT_SCHEMA": dbt_schema,
        "ANTENNA_ELT_LAKE": lake.as_uri(),
        "ANTENNA_ELT_DUCKDB_PATH": str(tmp / "warehouse.duckdb"),
        "ANTENNA_ELT_ALERTS_TOPIC": alerts,
        "ANTENNA_ELT_ALERT_LOG_SCHEMA": log_schema,
    }
    test_settings = load_settings({**os.environ, **overrides})
    # the user's Airflow virtualenv (installed once), the test's own home and sqlite metadata
    instance = airflow.Instance(
        root=tmp / "airflow",
        port=0,
        metadata_uri=f"sqlite:///{tmp / 'airflow.db'}",
        venv=airflow.default_instance(settings).venv,
    )
    started = time.monotonic()
    airflow.prepare(test_settings, instance, database=False)
    seconds = {"prepare": time.monotonic() - started}
    env = airflow.environment(test_settings, instance)
    env.update(overrides)
    try:
        yield Deployment(
            test_settings,
            instance,
            env,
            ledger_module.load(ledger_path),
            dbt_schema,
            alerts,
            seconds,
        )
    finally:
        admin.delete_topics([topic, alerts])
        admin.close()
        with psycopg.connect(settings.pg_conninfo, autocommit=True) as conn:
            for (name,) in conn.execute(
                "select nspname from pg_namespace where nspname in (%s, %s) or nspname like %s",
                (raw, log_schema, f"{dbt_schema}%"),
            ).fetchall():
                conn.execute(f'drop schema "{name}" cascade')


def airflow_cli(
    deployment: Deployment, *args: str, timeout: float = 900
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(deployment.instance.venv / "bin" / "airflow"), *args],
        env=deployment.env, capture_output=True, text=True, timeout=timeout, cwd=PROJECT_ROOT,
    )  # fmt: skip


def naive(moment: datetime) -> datetime:
    return moment.astimezone(UTC).replace(tzinfo=None)


def assert_bytes_hourly_equals_ledger(
    rows: list[tuple[Any, ...]], ledger: ledger_module.Ledger
) -> None:
    emails = {u.id: u.email for u in load_users()}
    for kind, dimension in (("antenna_bytes_total", "antenna"), ("app_bytes_total", "app"), ("mail_bytes_total", "user")):  # fmt: skip
        served = {(ts, key): value for ts, key, value, t in rows if t == kind}
        expected = {
            (naive(ts), emails[key] if dimension == "user" else key): value
            for (ts, key), value in ledger.bytes_by("hour", dimension).items()
            if dimension != "user" or key in emails
        }
        assert served == expected, kind


def json_output(proc: subprocess.CompletedProcess[str]) -> Any:
    """The JSON a CLI command printed (Airflow prints warnings before it)."""
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-2000:]
    for line in proc.stdout.splitlines():
        if line.startswith(("[", "{")):
            try:
                return json.loads(line)
            except ValueError:
                continue  # a log line that starts with a bracket
    raise AssertionError(f"no JSON in the output of {proc.args}:\n{proc.stdout[-3000:]}")


def test_the_dag_folder_imports_without_errors(deployment: Deployment) -> None:
    parsed = airflow_cli(deployment, "dags", "reserialize")
    assert parsed.returncode == 0, (parsed.stdout + parsed.stderr)[-2000:]
    assert json_output(airflow_cli(deployment, "dags", "list-import-errors", "-o", "json")) == []
    listed = json_output(airflow_cli(deployment, "dags", "list", "-o", "json"))
    assert {d["dag_id"] for d in listed} == {"antenna_elt_speed", "antenna_elt_hourly"}


def test_the_speed_dag_builds_the_postgres_marts_and_sends_the_alerts(
    deployment: Deployment,
) -> None:
    started = time.monotonic()
    proc = airflow_cli(deployment, "dags", "test", "antenna_elt_speed")
    deployment.seconds["speed"] = time.monotonic() - started
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    assert "state=success" in proc.stdout + proc.stderr
    sql = f"select * from {deployment.dbt_schema}_marts.bytes_hourly"
    assert_bytes_hourly_equals_ledger(
        query_postgres(deployment.settings.pg_conninfo, sql), deployment.ledger
    )
    breaches = sorted((e, naive(h).isoformat()[:13]) for e, h, _, _ in deployment.ledger.breaches())
    assert breaches, "the simulated hour has breaches"
    messages = json_messages(deployment.settings, deployment.alerts_topic)
    per_user_hour = Counter((m["email"], m["hour"][:13]) for m in messages)
    assert sorted(per_user_hour) == breaches and set(per_user_hour.values()) == {1}


def test_the_hourly_dag_waits_for_the_closed_hour_and_builds_the_warehouse(
    deployment: Deployment,
) -> None:
    started = time.monotonic()
    # the run due at 11:00 handles the hour 10:00-11:00
    proc = airflow_cli(
        deployment, "dags", "test", "antenna_elt_hourly", "2026-11-23T11:00:00+00:00"
    )
    deployment.seconds["hourly"] = time.monotonic() - started
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    assert f"hour {HOUR} is closed" in proc.stdout + proc.stderr
    rows = query_duckdb(
        deployment.env["ANTENNA_ELT_DUCKDB_PATH"],
        f"select * from {deployment.dbt_schema}_marts.bytes_hourly",
    )
    assert_bytes_hourly_equals_ledger(rows, deployment.ledger)
    print(f"airflow timings (s): {deployment.seconds}")
