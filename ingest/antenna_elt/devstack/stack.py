"""The local stack: a single-node KRaft Kafka broker (:mod:`.kafka`) and a PostgreSQL
server (:mod:`.postgres`), real servers started by the project itself on 127.0.0.1, with
every file under ``settings.home`` (``.stack/`` by default).

``ensure_up`` is idempotent and returns only when both answer. When
``KAFKA_BOOTSTRAP_SERVERS`` or ``PGHOST``/``PGPORT`` point elsewhere, that component is
left to the user and only checked.
"""

from __future__ import annotations

import fcntl
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from antenna_elt.devstack.kafka import (
    TOPIC_PARTITIONS,
    check_prerequisites,
    ensure_topic,
    kafka_answers,
    kafka_dir,
    kafka_pid,
    start_kafka,
    stop_kafka,
)
from antenna_elt.devstack.postgres import (
    pg_answers,
    pg_dir,
    postgres_pid,
    start_postgres,
    stop_postgres,
)
from antenna_elt.settings import Settings

__all__ = [
    "ensure_up",
    "start_kafka",
    "start_postgres",
    "status",
    "stop",
    "stop_kafka",
    "stop_postgres",
]


@dataclass(frozen=True)
class ComponentStatus:
    name: str
    state: str  # running | stopped | external | unreachable
    detail: str

    def line(self) -> str:
        return (
            f"{self.name}: {self.state} ({self.detail})"
            if self.detail
            else f"{self.name}: {self.state}"
        )


@contextmanager
def _one_at_a_time(settings: Settings) -> Iterator[None]:
    """Hold the stack's lock: two `stack up`s at once (two terminals, two test workers) would
    both set up roles, databases and pg_hba.conf, and one fails on the other's half-done
    work; the second waits and then finds everything up."""
    settings.home.mkdir(parents=True, exist_ok=True)
    with open(settings.home / "stack.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def ensure_up(settings: Settings) -> list[str]:
    """Start (or check) Kafka and PostgreSQL and the events topic; return status lines."""
    check_prerequisites(settings)
    with _one_at_a_time(settings):
        lines = [start_postgres(settings), start_kafka(settings)]
        if ensure_topic(settings, settings.topic):
            lines.append(f"kafka: created topic {settings.topic} ({TOPIC_PARTITIONS} partitions)")
    return lines


def stop(settings: Settings) -> list[str]:
    """Stop what :func:`ensure_up` started; return status lines."""
    with _one_at_a_time(settings):
        return [stop_kafka(settings), stop_postgres(settings)]


def _component(
    name: str, external: bool, answers: bool | None, address: str, pid: int | None, data: Path
) -> ComponentStatus:
    if external:
        return ComponentStatus(name, "external" if answers else "unreachable", address)
    if pid is None:
        return ComponentStatus(name, "stopped", "")
    return ComponentStatus(name, "running", f"pid {pid}, {address}, data {data}")


def status(settings: Settings) -> list[ComponentStatus]:
    kafka_external, pg_external = settings.kafka_external, settings.pg_external
    return [
        _component(
            "kafka",
            kafka_external,
            kafka_external and kafka_answers(settings.kafka_bootstrap_servers, 3.0),
            settings.kafka_bootstrap_servers,
            None if kafka_external else kafka_pid(settings),
            kafka_dir(settings) / "data",
        ),
        _component(
            "postgres",
            pg_external,
            pg_external and pg_answers(settings),
            settings.pg_conninfo if pg_external else f"127.0.0.1:{settings.pg_port}",
            None if pg_external else postgres_pid(settings),
            pg_dir(settings) / "data",
        ),
    ]
