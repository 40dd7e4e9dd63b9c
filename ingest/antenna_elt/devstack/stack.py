"""The local stack: a single-node KRaft Kafka broker (:mod:`.kafka`) and a PostgreSQL
server (:mod:`.postgres`), real servers started by the project itself on 127.0.0.1, with
every file under ``settings.home`` (``.stack/`` by default).

``ensure_up`` is idempotent and returns only when both answer. When
``KAFKA_BOOTSTRAP_SERVERS`` or ``PGHOST``/``PGPORT`` point elsewhere, that component is
left to the user and only checked.
"""

from __future__ import annotations

from dataclasses import dataclass

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


def ensure_up(settings: Settings) -> list[str]:
    """Start (or check) Kafka and PostgreSQL and the events topic; return status lines."""
    check_prerequisites(settings)
    lines = [start_postgres(settings), start_kafka(settings)]
    if ensure_topic(settings, settings.topic):
        lines.append(f"kafka: created topic {settings.topic} ({TOPIC_PARTITIONS} partitions)")
    return lines


def stop(settings: Settings) -> list[str]:
    """Stop what :func:`ensure_up` started; return status lines."""
    return [stop_kafka(settings), stop_postgres(settings)]


def status(settings: Settings) -> list[ComponentStatus]:
    result = []
    if settings.kafka_external:
        state = (
            "external" if kafka_answers(settings.kafka_bootstrap_servers, 3.0) else "unreachable"
        )
        result.append(ComponentStatus("kafka", state, settings.kafka_bootstrap_servers))
    else:
        pid = kafka_pid(settings)
        if pid is None:
            result.append(ComponentStatus("kafka", "stopped", ""))
        else:
            detail = f"pid {pid}, {settings.kafka_bootstrap_servers}, data {kafka_dir(settings) / 'data'}"
            result.append(ComponentStatus("kafka", "running", detail))
    if settings.pg_external:
        state = "external" if pg_answers(settings) else "unreachable"
        result.append(ComponentStatus("postgres", state, settings.pg_conninfo))
    else:
        pid = postgres_pid(settings)
        if pid is None:
            result.append(ComponentStatus("postgres", "stopped", ""))
        else:
            detail = f"pid {pid}, 127.0.0.1:{settings.pg_port}, data {pg_dir(settings) / 'data'}"
            result.append(ComponentStatus("postgres", "running", detail))
    return result
