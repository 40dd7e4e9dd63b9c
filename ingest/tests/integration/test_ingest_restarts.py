"""The PostgreSQL ingestor keeps running through a broker restart and a database restart.

These scenarios stop and start servers, so they use a private stack (its own data
directory and ports) instead of the shared one the other tests use.
"""

from __future__ import annotations

import os
import signal
import socket
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from helpers import ingestor_process, produce, unique_group, wait_for
from test_ingest_crash import assert_exactly_once, messages, staged_count

from antenna_elt.devstack import stack
from antenna_elt.settings import Settings, load_settings

pytestmark = pytest.mark.slow


def free_port_pair() -> int:
    """A port p such that p and p + 1 (the controller listener) are free."""
    for _ in range(50):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port >= 65535:
            continue
        with socket.socket() as s2:
            try:
                s2.bind(("127.0.0.1", port + 1))
            except OSError:
                continue
        return port
    raise RuntimeError("no free pair of ports")


@pytest.fixture(scope="module")
def private_stack(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[Settings, dict[str, str]]]:
    home = tmp_path_factory.mktemp("private-stack")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PG", "KAFKA_"))}
    env.update(
        ANTENNA_ELT_HOME=str(home),
        ANTENNA_ELT_KAFKA_PORT=str(free_port_pair()),
        ANTENNA_ELT_PG_PORT=str(free_port_pair()),
    )
    settings = load_settings(env)
    try:
        stack.ensure_up(settings)
    except Exception as exc:
        pytest.fail(f"private stack could not start: {exc}")
    try:
        yield settings, env
    finally:
        stack.stop_kafka(settings)
        stack.stop_postgres(settings)


def create_topic(settings: Settings, name: str) -> None:
    from kafka.admin import KafkaAdminClient, NewTopic

    admin = KafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap_servers)
    admin.create_topics([NewTopic(name, 3, 1)])
    admin.close()


def test_ingestor_survives_broker_and_database_restarts_without_loss_or_duplicates(
    private_stack: tuple[Settings, dict[str, str]], tmp_path: Path
) -> None:
    settings, env = private_stack
    topic, schema, group = "restarts", "raw_restarts", unique_group()
    create_topic(settings, topic)
    log = tmp_path / "ingest.log"
    produce(settings, topic, messages(0, 20_000))
    proc = ingestor_process(
        settings,
        topic,
        schema,
        group,
        "--batch-size",
        "1000",
        "--max-latency",
        "0.2",
        log_path=log,
        env=env,
    )
    try:
        wait_for(lambda: staged_count(settings, schema) >= 20_000, 120, "the first 20000 messages")

        # the broker goes away and comes back; new traffic arrives after it is back
        stack.stop_kafka(settings)
        with socket.socket() as probe:
            assert probe.connect_ex(("127.0.0.1", settings.kafka_port)) != 0, (
                "broker still listening"
            )
        stack.start_kafka(settings)
        produce(settings, topic, messages(20_000, 40_000))
        wait_for(
            lambda: staged_count(settings, schema) >= 40_000,
            180,
            "messages after the broker restart",
        )

        # the database goes away while messages are waiting to be written
        stack.stop_postgres(settings)
        produce(settings, topic, messages(40_000, 60_000))
        with pytest.raises(psycopg.OperationalError):
            psycopg.connect(settings.pg_conninfo, connect_timeout=2)
        stack.start_postgres(settings)
        wait_for(
            lambda: staged_count(settings, schema) >= 60_000,
            180,
            "messages after the database restart",
        )
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=60)
    text = log.read_text()
    assert code == 0, text[-3000:]
    assert "unavailable" in text and "is back" in text, text[-3000:]
    assert_exactly_once(settings, topic, schema, 60_000)
