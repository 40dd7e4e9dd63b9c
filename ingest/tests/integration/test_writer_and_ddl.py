"""Whatever dies or runs at once around the ingestors: a writer process (kafka-python's)
killed at any time is replaced, and concurrent first runs of every command that creates tables succeed."""

from __future__ import annotations

import functools
import json
import os
import signal
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from both_sinks import start_cli, start_ingestor
from helpers import all_offsets, children, end_offsets, produce, staged_offsets, wait_for
from test_fencing import at_once

from antenna_elt.alerts.quota import notify_once
from antenna_elt.settings import Settings
from antenna_elt.sinks.postgres import PostgresSink

T0 = 1_795_489_200  # 2026-11-24T03:00:00Z
DEVICE = "00000000-0000-0000-0000-000000000004"
ANTENNA = "6f1c3b2a-9d4e-4f5a-8b7c-0123456789ab"


def event(i: int) -> bytes:
    return json.dumps(
        {"timestamp": T0 + i, "id": DEVICE, "antenna_id": ANTENNA, "bytes": i, "app": "SKYPE"}
    ).encode()


def writer_pid(ingestor: int) -> int:
    """The ingestor's writer: its spawned multiprocessing worker (not the resource tracker)."""
    [pid] = [
        c for c in children(ingestor) if b"spawn_main" in Path(f"/proc/{c}/cmdline").read_bytes()
    ]
    return pid


def test_a_writer_process_killed_while_idle_is_replaced_and_ingestion_goes_on_exactly(
    settings: Settings, kafka_topic: str, pg_schema: str, pg_conn: Any, tmp_path: Path
) -> None:
    produce(settings, kafka_topic, [(i % 3, event(i)) for i in range(300)])
    # the client whose sink writes in a process of its own (librdkafka's loop writes itself)
    run = start_ingestor(
        "postgres", kafka_topic, tmp_path, "--schema", pg_schema, "--max-latency", "0.2",
        "--kafka-client", "kafka-python",
    )  # fmt: skip
    try:

        def staged() -> list[tuple[int, int]]:
            try:
                return staged_offsets(pg_conn, pg_schema, kafka_topic)
            except psycopg.errors.UndefinedTable:  # not set up yet
                return []

        wait_for(lambda: len(staged()) == 300, 60, "the first 300 messages")
        for round_ in range(2):
            # idle: nothing in flight; the writer dies between two batches
            first_writer = writer_pid(run.proc.pid)
            os.kill(first_writer, signal.SIGKILL)
            time.sleep(1.5)
            assert run.proc.poll() is None, run.text()[-3000:]
            start = 300 * (round_ + 1)
            produce(settings, kafka_topic, [(i % 3, event(i)) for i in range(start, start + 300)])
            wait_for(
                lambda n=start + 300: len(staged()) == n, 60, "the messages sent after the kill"
            )
            assert writer_pid(run.proc.pid) != first_writer
        run.proc.send_signal(signal.SIGTERM)
        assert run.wait(60) == 0
    finally:
        if run.proc.poll() is None:
            run.proc.kill()
    assert sorted(staged_offsets(pg_conn, pg_schema, kafka_topic)) == all_offsets(
        end_offsets(settings, kafka_topic)
    )
    assert run.text().count("the writer process died while idle; starting a new one") == 2


# -- concurrent first runs -------------------------------------------------------------


@pytest.fixture
def fresh_schemas(pg_conn: Any) -> Iterator[list[str]]:
    """Names of schemas that do not exist yet (dropped afterwards)."""
    names = [f"t_{uuid.uuid4().hex[:8]}" for _ in range(6)]
    try:
        yield names
    finally:
        for name in names:
            pg_conn.execute(f"drop schema if exists {name} cascade")


def test_postgres_ingestors_set_up_a_fresh_schema_concurrently(
    settings: Settings, fresh_schemas: list[str], pg_conn: Any
) -> None:
    for schema in fresh_schemas:
        sinks = [PostgresSink(settings.pg_conninfo, schema, f"g{n}") for n in range(4)]
        assert at_once([sink.setup for sink in sinks]) == ["committed None"] * 4
        for sink in sinks:
            sink.close()
        tables = pg_conn.execute(
            "select table_name from information_schema.tables where table_schema = %s order by 1",
            (schema,),
        ).fetchall()
        assert tables == [("device_usage",), ("device_usage_rejects",), ("ingest_offsets",)]


@pytest.fixture
def empty_marts(pg_conn: Any) -> Iterator[str]:
    """A marts schema whose breach mart exists and is empty (notify reads it)."""
    name = f"t_{uuid.uuid4().hex[:8]}"
    pg_conn.execute(
        f"create schema {name}; create table {name}.fct_quota_breaches (user_id text, "
        "user_name text, email text, hour_start timestamp, usage_bytes bigint, "
        "quota_bytes bigint, overage_bytes bigint, usage_ratio double precision)"
    )
    try:
        yield name
    finally:
        pg_conn.execute(f"drop schema {name} cascade")


def test_notify_runs_set_up_a_fresh_alert_schema_concurrently(
    settings: Settings, fresh_schemas: list[str], empty_marts: str, pg_conn: Any
) -> None:
    for schema in fresh_schemas:
        runs = [functools.partial(notify_once, settings, empty_marts, schema, "quota-alerts")] * 4
        assert at_once(runs) == ["committed (0, 0)"] * 4
        assert pg_conn.execute(
            "select count(*) from information_schema.tables where table_schema = %s", (schema,)
        ).fetchone() == (1,)


def test_first_runs_of_every_command_that_creates_tables_succeed_together(
    settings: Settings, kafka_topic: str, fresh_schemas: list[str], empty_marts: str, tmp_path: Path
) -> None:
    # one fresh schema for the landing tables of two ingestors and the alert log of two
    # notify runs, all started at once as an operator's scheduler would
    schema = fresh_schemas[0]
    runs = [
        start_ingestor("postgres", kafka_topic, tmp_path, "--schema", schema, "--until-caught-up")
        for _ in range(2)
    ]
    notify = [
        start_cli("notify", tmp_path, "--marts-schema", empty_marts, "--log-schema", schema)
        for _ in range(2)
    ]
    for run in [*runs, *notify]:
        assert run.wait(120) == 0, run.text()[-3000:]
