"""Small helpers the integration tests share: produce raw messages, ingest, query."""

from __future__ import annotations

import contextlib
import functools
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

from antenna_elt.ingest.loop import IngestLoop, LoopOptions, Stats
from antenna_elt.settings import Settings, load_settings
from antenna_elt.sinks.postgres import PostgresSink

ROOT = Path(__file__).resolve().parents[3]


def produce(settings: Settings, topic: str, messages: Iterable[tuple[int, bytes | None]]) -> int:
    """Send (partition, value) pairs in order; returns how many were sent."""
    from kafka import KafkaProducer

    producer = KafkaProducer(
        bootstrap_servers=settings.kafka_bootstrap_servers, acks="all", linger_ms=5
    )
    sent = 0
    for partition, value in messages:
        producer.send(topic, key=b"test", value=value, partition=partition)
        sent += 1
    producer.flush(timeout=60)
    producer.close()
    return sent


def end_offsets(settings: Settings, topic: str) -> dict[int, int]:
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(bootstrap_servers=settings.kafka_bootstrap_servers)
    try:
        parts = sorted(consumer.partitions_for_topic(topic) or [])
        ends = consumer.end_offsets([TopicPartition(topic, p) for p in parts])
        return {tp.partition: off for tp, off in ends.items()}
    finally:
        consumer.close()


def unique_group() -> str:
    return f"test-{uuid.uuid4().hex[:8]}"


def ingest_until_caught_up(
    settings: Settings, topic: str, schema: str, group: str, *, batch_size: int = 20_000
) -> Stats:
    sink = functools.partial(PostgresSink, settings.pg_conninfo, schema, group)
    options = LoopOptions(
        client=load_settings().kafka_client,
        topic=topic,
        group_id=group,
        bootstrap_servers=settings.kafka_bootstrap_servers,
        batch_size=batch_size,
        max_latency=0.5,
        until_caught_up=True,
        idle_timeout=120,
    )
    return IngestLoop(sink, options).run()


def ingestor_process(
    settings: Settings,
    topic: str,
    schema: str,
    group: str,
    *extra: str,
    log_path: Path,
    env: dict[str, str] | None = None,
) -> subprocess.Popen[bytes]:
    """Start `antenna-elt ingest postgres` as a separate process (to kill -9 it)."""
    cmd: Sequence[str] = [
        sys.executable,
        "-m",
        "antenna_elt.cli",
        "ingest",
        "postgres",
        "--topic",
        topic,
        "--schema",
        schema,
        "--group",
        group,
        "--log-interval",
        "2",
        *extra,
    ]
    log = open(log_path, "ab")  # noqa: SIM115 - handed to the child process
    return subprocess.Popen(
        cmd, stdout=log, stderr=subprocess.STDOUT, env=env or dict(os.environ), cwd=ROOT
    )


def kill9(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)


def wait_for(predicate: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def staged_offsets(conn: Any, schema: str, topic: str) -> list[tuple[int, int]]:
    """Every (partition, offset) in staging and rejects, duplicates kept."""
    return [
        (int(p), int(o))
        for p, o in conn.execute(
            f"select kafka_partition, kafka_offset from {schema}.device_usage where kafka_topic = %s "
            f"union all select kafka_partition, kafka_offset from {schema}.device_usage_rejects "
            "where kafka_topic = %s",
            (topic, topic),
        ).fetchall()
    ]


def all_offsets(ends: dict[int, int]) -> list[tuple[int, int]]:
    return sorted((p, o) for p, end in ends.items() for o in range(end))


def children(pid: int) -> list[int]:
    """Child processes of ``pid`` (the ingestors' writer, multiprocessing's tracker)."""
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            found += [int(c) for c in (task / "children").read_text().split()]
        except FileNotFoundError:  # the thread ended meanwhile
            continue
    return found


def signal_tree(pid: int, signum: int) -> None:
    """Send ``signum`` to a process and its children (SIGSTOP/SIGCONT a whole ingestor:
    its consumer and its writer)."""
    for target in [pid, *children(pid)]:
        try:
            os.kill(target, signum)
        except ProcessLookupError:
            continue


@contextlib.contextmanager
def recorded_command_lines() -> Iterator[tuple[list[str], set[str]]]:
    """While inside: the command line of every process this process starts (first list),
    and every command line seen in /proc on the whole machine, sampled every 0.1 s (the
    set): what `ps` shows any user."""
    started: list[str] = []
    seen: set[str] = set()
    real_popen = subprocess.Popen

    class RecordingPopen(real_popen):  # type: ignore[misc,valid-type]
        def __init__(self, args: Any, *rest: Any, **kwargs: Any) -> None:
            started.append(args if isinstance(args, str) else " ".join(map(str, args)))
            super().__init__(args, *rest, **kwargs)

    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
                try:
                    seen.add(cmdline.read_bytes().replace(b"\0", b" ").decode(errors="replace"))
                except OSError:
                    continue
            done.wait(0.1)

    sampler = threading.Thread(target=sample, daemon=True)
    subprocess.Popen = RecordingPopen  # type: ignore[misc]
    sampler.start()
    try:
        yield started, seen
    finally:
        subprocess.Popen = real_popen  # type: ignore[misc]
        done.set()
        sampler.join()


def json_messages(settings: Settings, topic: str) -> list[dict[str, Any]]:
    """Every message of ``topic`` from the beginning, parsed as JSON (the alerts)."""
    import json

    from kafka import KafkaConsumer

    consumer = KafkaConsumer(
        topic,
        bootstrap_servers=settings.kafka_bootstrap_servers,
        auto_offset_reset="earliest",
        consumer_timeout_ms=3000,
    )
    try:
        return [json.loads(m.value) for m in consumer]
    finally:
        consumer.close()


PROJECT_FILES = ("models", "macros", "tests", "seeds", "dbt_project.yml", "dbt-bouncer.yml")


def copy_project(dest: Path) -> Path:
    """A copy of the dbt project in `dest` (to break or edit)."""
    import shutil

    for name in PROJECT_FILES:
        source = ROOT / name
        if source.is_dir():
            shutil.copytree(source, dest / name)
        else:
            shutil.copy(source, dest / name)
    return dest
