"""Helpers of the tests that hold both ingestors to the same answer: produce with
librdkafka (compression, transactions), run `ingest postgres` and `ingest lake` as the
operator does, and read back what each sink holds in one comparable form."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from helpers import ROOT
from lake_helpers import read_lake

from antenna_elt.settings import Settings

Event = tuple[int, int, int, str, str, int, str]
"""(partition, offset, epoch seconds, id, antenna_id, bytes, app)"""
Rejected = tuple[int, int, str, bytes | None]
"""(partition, offset, reason, raw value)"""


def producer(settings: Settings, **config: Any) -> Any:
    from confluent_kafka import Producer

    return Producer(
        {
            "bootstrap.servers": settings.kafka_bootstrap_servers,
            "enable.idempotence": True,
            "acks": "all",
            "log_level": 0,
            "message.max.bytes": 2_000_000,
            **config,
        }
    )


def produce_librdkafka(
    settings: Settings, topic: str, messages: Iterable[tuple[int, bytes | None]], **config: Any
) -> int:
    """Send (partition, value) pairs in order with librdkafka (``config``: e.g.
    ``compression.type``); returns how many were sent."""
    p = producer(settings, **config)
    failed: list[str] = []

    def delivered(error: Any, _msg: Any) -> None:
        if error is not None:
            failed.append(str(error))

    sent = 0
    for partition, value in messages:
        while True:
            try:
                p.produce(topic, value=value, key=b"k", partition=partition, on_delivery=delivered)
                break
            except BufferError:
                p.poll(0.05)
        p.poll(0)
        sent += 1
    assert p.flush(60) == 0 and not failed, failed[:3]
    return sent


@dataclass
class Run:
    name: str
    proc: subprocess.Popen[bytes]
    log: Path

    def wait(self, timeout: float) -> int:
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=30)
            raise AssertionError(
                f"{self.name} did not end within {timeout:.0f} s; log:\n"
                + self.log.read_text()[-3000:]
            ) from None

    def text(self) -> str:
        return self.log.read_text()


def start_cli(name: str, tmp_path: Path, *args: str, env: dict[str, str] | None = None) -> Run:
    """`antenna-elt NAME ARGS...` as its own process, its output in a log file."""
    log = tmp_path / f"{name}-{uuid.uuid4().hex[:6]}.log"
    out = open(log, "ab")  # noqa: SIM115 - handed to the child process
    proc = subprocess.Popen(
        [sys.executable, "-m", "antenna_elt.cli", name, *args],
        stdout=out,
        stderr=subprocess.STDOUT,
        env=env or dict(os.environ),
        cwd=ROOT,
    )
    out.close()
    return Run(name, proc, log)


def start_ingestor(
    sink: str,
    topic: str,
    tmp_path: Path,
    *args: str,
    group: str | None = None,
    env: dict[str, str] | None = None,
) -> Run:
    """`antenna-elt ingest <sink> --topic TOPIC ARGS...` as its own process."""
    group = group or f"test-{sink}-{uuid.uuid4().hex[:8]}"
    run = start_cli(
        "ingest", tmp_path, sink, "--topic", topic, "--group", group, "--log-interval", "2",
        *args, env=env,
    )  # fmt: skip
    run.name = f"ingest {sink}"
    return run


def ingest_both(
    topic: str, schema: str, lake: Path, tmp_path: Path, *args: str, timeout: float = 300
) -> None:
    """Both ingestors side by side on one topic, each in its own group, until caught up;
    both must end with exit code 0."""
    runs = [
        start_ingestor("postgres", topic, tmp_path, "--schema", schema, "--until-caught-up", *args),
        start_ingestor("lake", topic, tmp_path, "--lake", str(lake), "--until-caught-up", *args),
    ]
    for run in runs:
        code = run.wait(timeout)
        assert code == 0, f"{run.name} exited {code}:\n{run.text()[-3000:]}"


def postgres_events(conn: Any, schema: str, topic: str) -> list[Event]:
    return [
        (p, o, int(t), i, a, b, app)
        for p, o, t, i, a, b, app in conn.execute(
            "select kafka_partition, kafka_offset, extract(epoch from event_time)::bigint, "
            f"id::text, antenna_id::text, bytes, app from {schema}.device_usage "
            "where kafka_topic = %s order by 1, 2",
            (topic,),
        ).fetchall()
    ]


def postgres_rejects(conn: Any, schema: str, topic: str) -> list[Rejected]:
    return [
        (p, o, reason, None if raw is None else bytes(raw))
        for p, o, reason, raw in conn.execute(
            "select kafka_partition, kafka_offset, reason, raw_value "
            f"from {schema}.device_usage_rejects where kafka_topic = %s order by 1, 2",
            (topic,),
        ).fetchall()
    ]


def lake_events(root: Path) -> list[Event]:
    table = read_lake(root)
    if table is None:
        return []
    columns = ("kafka_partition", "kafka_offset", "event_time", "id", "antenna_id", "bytes", "app")
    rows = []
    for r in table.select(list(columns)).to_pylist():
        r["event_time"] = int(r["event_time"].timestamp())
        rows.append(tuple(r[c] for c in columns))
    return sorted(rows)  # (partition, offset) first: a duplicate shows as two equal keys


def lake_rejects(root: Path) -> list[Rejected]:
    table = read_lake(root, "device_usage_rejects")
    if table is None:
        return []
    return sorted(
        ((r["kafka_partition"], r["kafka_offset"], r["reason"], r["raw_value"])
         for r in table.to_pylist()),
        key=lambda r: (r[0], r[1]),
    )  # fmt: skip
