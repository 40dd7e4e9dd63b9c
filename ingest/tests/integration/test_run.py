"""`antenna-elt run`, the pipeline by itself: a bounded run over a fixed-seed simulated
stream ends with the serving marts equal to the ledger on PostgreSQL and DuckDB and exactly
one alert per breaching user-hour, even though an ingestor worker and a dbt build are
killed with SIGKILL while it runs."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
import pytest
from conftest import run_cli
from helpers import ROOT, copy_project, json_messages, wait_for

from antenna_elt.dbt import query_duckdb, query_postgres
from antenna_elt.settings import Settings
from antenna_elt.sim import ledger as ledger_module
from antenna_elt.sim.users import load_users


@dataclass
class Scenario:
    settings: Settings
    topic: str
    alerts_topic: str
    env: dict[str, str]
    dbt_schema: str
    work: Path
    ledgers: list[Path]


@pytest.fixture
def scenario(settings: Settings, tmp_path: Path) -> Iterator[Scenario]:
    from kafka.admin import KafkaAdminClient, NewTopic

    tag = uuid.uuid4().hex[:8]
    topic, alerts = f"run-{tag}", f"run-alerts-{tag}"
    admin = KafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap_servers)
    admin.create_topics([NewTopic(topic, 3, 1), NewTopic(alerts, 1, 1)])
    raw, dbt_schema, log_schema = f"run_raw_{tag}", f"run_{tag}", f"run_alerts_{tag}"
    env = {
        **os.environ,
        "ANTENNA_ELT_TOPIC": topic,
        "ANTENNA_ELT_RAW_SCHEMA": raw,
        "ANTENNA_ELT_DBT_SCHEMA": dbt_schema,
        "ANTENNA_ELT_LAKE": (tmp_path / "lake").as_uri(),
        "ANTENNA_ELT_DUCKDB_PATH": str(tmp_path / "warehouse.duckdb"),
        "ANTENNA_ELT_LOG_SCHEMA_FOR_TEST": log_schema,
    }
    try:
        yield Scenario(settings, topic, alerts, env, dbt_schema, tmp_path / "run", [])
    finally:
        admin.delete_topics([topic, alerts])
        admin.close()
        with psycopg.connect(settings.pg_conninfo, autocommit=True) as conn:
            for (name,) in conn.execute(
                "select nspname from pg_namespace where nspname in (%s, %s) or nspname like %s",
                (raw, log_schema, f"{dbt_schema}%"),
            ).fetchall():
                conn.execute(f'drop schema "{name}" cascade')


def simulate(scenario: Scenario, *args: str) -> None:
    path = scenario.work.parent / f"ledger-{len(scenario.ledgers)}.json"
    proc = run_cli("simulate", "--topic", scenario.topic, "--ledger", str(path), "--quiet", *args)
    assert proc.returncode == 0, proc.stderr
    scenario.ledgers.append(path)


def merged_ledger(paths: list[Path]) -> ledger_module.Ledger:
    total = ledger_module.Ledger()
    for path in paths:
        for key, (nbytes, events) in ledger_module.load(path).totals.items():
            slot = total.totals.setdefault(key, [0, 0])
            slot[0] += nbytes
            slot[1] += events
    total.finish(load_users())
    return total


def naive(moment: datetime) -> datetime:
    return moment.astimezone(UTC).replace(tzinfo=None)


def serving_rows(scenario: Scenario, target: str, mart: str) -> list[tuple[Any, ...]]:
    sql = f"select * from {scenario.dbt_schema}_marts.{mart}"
    if target == "postgres":
        return sorted(query_postgres(scenario.settings.pg_conninfo, sql))
    return sorted(query_duckdb(scenario.env["ANTENNA_ELT_DUCKDB_PATH"], sql))


def log_text(scenario: Scenario) -> str:
    return (scenario.work.parent / "runner.log").read_text(errors="replace")


def test_a_bounded_run_ends_exact_after_a_worker_and_a_build_are_killed(scenario: Scenario) -> None:
    simulate(scenario, "--start", "2026-11-23T10:00:00Z", "--duration", "1h", "--count", "12000",
             "--seed", "51", "--duplicate-share", "0.02", "--late-share", "0.05", "--late-max", "30m")  # fmt: skip
    log_schema = scenario.env["ANTENNA_ELT_LOG_SCHEMA_FOR_TEST"]
    tag = scenario.topic.removeprefix("run-")
    with (scenario.work.parent / "runner.log").open("wb") as out:
        runner = subprocess.Popen(
            [sys.executable, "-m", "antenna_elt.cli", "run", "--for", "100s",
             "--postgres-group", f"run-pg-{tag}", "--lake-group", f"run-lake-{tag}",
             "--alerts-topic", scenario.alerts_topic, "--log-schema", log_schema,
             "--work-dir", str(scenario.work)],
            cwd=ROOT, env=scenario.env, stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        # the first speed cycle has built what was there
        wait_for(lambda: "speed cycle 1:" in log_text(scenario), 120, "the first speed cycle")
        # SIGKILL the PostgreSQL ingestor: the runner restarts it
        pid = int(re.findall(r"ingest postgres started \(pid (\d+)\)", log_text(scenario))[-1])
        os.kill(pid, signal.SIGKILL)
        wait_for(
            lambda: "ingest postgres died (signal 9)" in log_text(scenario), 30, "the death noticed"
        )
        wait_for(
            lambda: len(re.findall(r"ingest postgres started", log_text(scenario))) >= 2,
            30,
            "a restart",
        )
        # more events arrive: the next speed cycle builds them, and is SIGKILLed midway
        simulate(scenario, "--start", "2026-11-23T11:00:00Z", "--duration", "1h", "--count", "12000",
                 "--seed", "52", "--late-share", "0.05", "--late-max", "70m")  # fmt: skip
        killed = kill_a_running_build(scenario)
        assert killed, "a dbt build was running to be killed"
        assert runner.wait(timeout=400) == 0
    finally:
        if runner.poll() is None:
            runner.send_signal(signal.SIGKILL)
    text = log_text(scenario)
    assert "dbt build postgres exited with code -9" in text or "FAILED" in text, text[-3000:]
    # the data tests ran beside the builds, and the last one after the final build: no test
    # failed, though tests ran while builds committed (and one build was killed)
    assert "DATA TEST FAILED" not in text, text[-3000:]
    assert re.search(
        r"final test cycle \d+: dbt test postgres [\d.]+ s \(\d+ tests, 0 failed", text
    ), text[-3000:]
    ledger = merged_ledger(scenario.ledgers)
    emails = {u.id: u.email for u in load_users()}
    for target in ("postgres", "duckdb"):
        rows = serving_rows(scenario, target, "bytes_hourly")
        for kind, dimension in (("antenna_bytes_total", "antenna"), ("app_bytes_total", "app"), ("mail_bytes_total", "user")):  # fmt: skip
            served = {(ts, key): value for ts, key, value, t in rows if t == kind}
            expected = {
                (naive(ts), emails[key] if dimension == "user" else key): value
                for (ts, key), value in ledger.bytes_by("hour", dimension).items()
                if dimension != "user" or key in emails
            }
            assert served == expected, (target, kind)
        windows = serving_rows(scenario, target, "bytes")
        served_windows = {
            (ts, key): value for ts, key, value, t in windows if t == "antenna_bytes_total"
        }
        assert served_windows == {
            (naive(ts), key): value
            for (ts, key), value in ledger.bytes_by("window", "antenna").items()
        }, target
        breaches = sorted((e, u, q, naive(h)) for e, h, u, q in ledger.breaches())
        assert breaches
        assert serving_rows(scenario, target, "user_quota_limit") == breaches, target
    messages = json_messages(scenario.settings, scenario.alerts_topic)
    per_user_hour = Counter((m["email"], m["hour"][:13]) for m in messages)
    assert set(per_user_hour.values()) == {1}, per_user_hour
    assert sorted(per_user_hour) == sorted(
        (e, naive(h).isoformat()[:13]) for e, h, _, _ in ledger.breaches()
    )


def kill_a_running_build(scenario: Scenario) -> bool:
    """SIGKILL the speed cycle's dbt while it builds (its results of the last build are
    removed when a build starts and written when it ends; the process stays between)."""
    marker = str(scenario.work / "dbt-target-postgres")
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if "--for): stopping" in log_text(scenario):
            return False  # not the final build: that one must end the run exact
        if (scenario.work / "dbt-target-postgres" / "run_results.json").exists():
            time.sleep(0.05)
            continue
        found = subprocess.run(
            ["pgrep", "-f", marker], capture_output=True, text=True
        ).stdout.split()
        for pid in found:
            try:
                os.kill(int(pid), signal.SIGKILL)
                return True
            except ProcessLookupError:
                continue
        time.sleep(0.2)
    return False


def test_the_speed_cycles_dbt_worker_builds_an_edit_and_outlives_a_kill(tmp_path: Path) -> None:
    """The speed cycle's dbt stays up between cycles (no start-up and parse each time), yet
    a model an analyst adds while it runs is in the next command, and a worker killed with
    SIGKILL is replaced by the next command."""
    from antenna_elt.run.dbt_steps import DbtStep

    project = copy_project(tmp_path / "project")
    env = {"ANTENNA_ELT_DUCKDB_PATH": str(tmp_path / "w.duckdb")}
    step = DbtStep(tmp_path / "home", "duckdb", "raw", env=env, persistent=True, project=project)
    listing = ("ls", "--resource-type", "model", "--output", "name")
    try:
        first = step.run(*listing)
        assert first.exit_code == 0, first.output_tail
        assert "fct_usage_windowed" in first.output_tail.split()
        assert "fct_probe_added" not in first.output_tail.split()
        worker = step._process
        assert worker is not None and worker.poll() is None
        (project / "models" / "marts" / "fct_probe_added.sql").write_text("select 1 as one\n")
        second = step.run(*listing)
        assert second.exit_code == 0, second.output_tail
        assert "fct_probe_added" in second.output_tail.split()
        assert step._process is worker  # the same process: nothing started anew
        os.kill(worker.pid, signal.SIGKILL)
        worker.wait(timeout=10)
        third = step.run(*listing)
        assert third.exit_code == 0, third.output_tail
        assert "fct_probe_added" in third.output_tail.split()
        assert step._process is not None and step._process.pid != worker.pid
    finally:
        step.close()
