"""`antenna-elt notify` / `feedback`: one alert per user-hour over quota, exactly once,
read back from the real `quota-alerts` topic and the real alert log."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import orjson
import psycopg
import pytest
from conftest import run_cli

from antenna_elt.alerts.quota import alert_id
from antenna_elt.dbt import run_dbt
from antenna_elt.settings import Settings
from antenna_elt.sinks.postgres import DDL

JUAN, CARLOS, FEDE = (
    f"00000000-0000-0000-0000-{n:012d}" for n in (3, 8, 4)
)  # quotas 100000, 100000, 5000
ANTENNA = "6f1c3b2a-9d4e-4f5a-8b7c-0123456789ab"
HOUR = datetime(2026, 11, 24, 9, 0)
NEXT_HOUR = datetime(2026, 11, 24, 10, 0)


def event(at: str, device: str, nbytes: int, offset: int) -> tuple[Any, ...]:
    return (f"2026-11-24 {at}+00", device, ANTENNA, nbytes, "SKYPE", "test", 0, offset)


EVENTS = [
    event("09:10:00", FEDE, 3000, 0),
    event("09:50:00", FEDE, 2000, 1),  # exactly 5000: no breach
    event("09:05:00", JUAN, 100001, 2),  # one byte over: a breach
    event("09:30:00", CARLOS, 250000, 3),
    event("10:01:00", FEDE, 5001, 4),  # the next hour: a breach
]


class Marts:
    def __init__(self, settings: Settings):
        self.settings = settings
        tag = uuid.uuid4().hex[:8]
        self.raw, self.dbt = f"raw_n{tag}", f"n{tag}"
        with psycopg.connect(settings.pg_conninfo, autocommit=True) as conn:
            conn.execute(DDL.format(schema=self.raw))
        self.add(EVENTS)

    def add(self, events: list[tuple[Any, ...]]) -> None:
        with psycopg.connect(settings_conninfo(self.settings), autocommit=True) as conn:
            conn.cursor().executemany(
                f"insert into {self.raw}.device_usage (event_time, id, antenna_id, bytes, app, kafka_topic, "
                "kafka_partition, kafka_offset) values (%s, %s, %s, %s, %s, %s, %s, %s)",
                events,
            )
        run_dbt(
            [
                "build",
                "-s",
                "+fct_quota_breaches",
                "--indirect-selection",
                "cautious",
                "--vars",
                f"{{raw_schema: {self.raw}}}",
            ],
            env={"ANTENNA_ELT_DBT_SCHEMA": self.dbt},
        )

    def drop(self) -> None:
        with psycopg.connect(self.settings.pg_conninfo, autocommit=True) as conn:
            for schema in (
                self.raw,
                *(f"{self.dbt}_{s}" for s in ("staging", "intermediate", "marts", "seeds")),
            ):
                conn.execute(f"drop schema if exists {schema} cascade")


def settings_conninfo(settings: Settings) -> str:
    return settings.pg_conninfo


@pytest.fixture(scope="module")
def marts(settings: Settings) -> Iterator[Marts]:
    built = Marts(settings)
    yield built
    built.drop()


@pytest.fixture
def log_schema(pg_conn: Any) -> Iterator[str]:
    name = f"alerts_{uuid.uuid4().hex[:8]}"
    yield name
    pg_conn.execute(f"drop schema if exists {name} cascade")


def notify(marts: Marts, topic: str, log_schema: str, **env: str) -> Any:
    return run_cli(
        "notify", "--topic", topic, "--marts-schema", f"{marts.dbt}_marts", "--log-schema", log_schema,
        env={**os.environ, **env},
    )  # fmt: skip


def read_topic(settings: Settings, topic: str) -> list[tuple[bytes, dict[str, Any]]]:
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap_servers, enable_auto_commit=False
    )
    tps = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or [])]
    consumer.assign(tps)
    consumer.seek_to_beginning(*tps)
    ends = consumer.end_offsets(tps)
    messages = []
    while any(consumer.position(tp) < ends[tp] for tp in tps):
        for records in consumer.poll(timeout_ms=1000).values():
            messages += [(r.key, orjson.loads(r.value)) for r in records]
    consumer.close()
    return messages


def log_rows(settings: Settings, log_schema: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(settings.pg_conninfo) as conn:
        return conn.execute(
            f"select alert_id, email, hour_start, usage_bytes, quota_bytes, status, sent_usage_bytes "
            f"from {log_schema}.quota_breach_log order by hour_start, email"
        ).fetchall()


EXPECTED = [
    (alert_id(CARLOS, HOUR), "carlos@gmail.com", HOUR, 250000, 100000),
    (alert_id(JUAN, HOUR), "juan@gmail.com", HOUR, 100001, 100000),
    (alert_id(FEDE, NEXT_HOUR), "fede@gmail.com", NEXT_HOUR, 5001, 5000),
]


def test_one_message_per_breaching_user_hour_and_a_rerun_sends_nothing(
    settings: Settings, marts: Marts, kafka_topic: str, log_schema: str
) -> None:
    first = notify(marts, kafka_topic, log_schema)
    assert first.returncode == 0, first.stderr
    assert first.stdout.strip() == f"3 new breaches recorded, 3 alerts sent to {kafka_topic}"
    second = notify(marts, kafka_topic, log_schema)
    assert second.stdout.strip() == f"0 new breaches recorded, 0 alerts sent to {kafka_topic}"

    messages = read_topic(settings, kafka_topic)
    assert sorted(
        (m["alert_id"], m["email"], m["hour"], m["usage"], m["quota"], m["overage"])
        for _, m in messages
    ) == sorted((str(a), e, f"{h:%Y-%m-%dT%H:%M:%SZ}", u, q, u - q) for a, e, h, u, q in EXPECTED)
    assert {key for key, _ in messages} == {JUAN.encode(), CARLOS.encode(), FEDE.encode()}
    assert log_rows(settings, log_schema) == [(*row, "sent", row[3]) for row in EXPECTED]


def test_a_crash_between_publish_and_log_write_still_sends_one_message(
    settings: Settings, marts: Marts, kafka_topic: str, log_schema: str
) -> None:
    crashed = notify(marts, kafka_topic, log_schema, ANTENNA_ELT_NOTIFY_FAILPOINT="after-publish")
    assert crashed.returncode == 137
    assert len(read_topic(settings, kafka_topic)) == 3  # published ...
    assert {row[5] for row in log_rows(settings, log_schema)} == {"pending"}  # ... but not logged

    rerun = notify(marts, kafka_topic, log_schema)
    assert rerun.returncode == 0, rerun.stderr
    assert rerun.stdout.strip() == f"0 new breaches recorded, 0 alerts sent to {kafka_topic}"
    assert "already in" in rerun.stderr
    assert len(read_topic(settings, kafka_topic)) == 3
    assert log_rows(settings, log_schema) == [(*row, "sent", row[3]) for row in EXPECTED]


def test_usage_that_grows_after_the_alert_updates_the_log_without_a_second_alert(
    settings: Settings, kafka_topic: str, log_schema: str
) -> None:
    own = Marts(settings)
    try:
        assert notify(own, kafka_topic, log_schema).returncode == 0
        own.add([event("09:40:00", JUAN, 499, 5)])
        again = notify(own, kafka_topic, log_schema)
        assert again.stdout.strip() == f"0 new breaches recorded, 0 alerts sent to {kafka_topic}"
        assert len(read_topic(settings, kafka_topic)) == 3
        juan = [row for row in log_rows(settings, log_schema) if row[1] == "juan@gmail.com"]
        assert juan == [
            (alert_id(JUAN, HOUR), "juan@gmail.com", HOUR, 100500, 100000, "sent", 100001)
        ]
    finally:
        own.drop()


def test_feedback_is_recorded_in_the_log(
    settings: Settings, marts: Marts, kafka_topic: str, log_schema: str
) -> None:
    assert notify(marts, kafka_topic, log_schema).returncode == 0
    target = alert_id(JUAN, HOUR)
    proc = run_cli(
        "feedback",
        str(target),
        "--ack",
        "--text",
        "I was on a video call",
        "--log-schema",
        log_schema,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "feedback recorded for juan@gmail.com, hour 2026-11-24 09:00"
    with psycopg.connect(settings.pg_conninfo) as conn:
        row = conn.execute(
            f"select acknowledged_at is not null, feedback_text from {log_schema}.quota_breach_log where alert_id = %s",
            (target,),
        ).fetchone()
    assert row == (True, "I was on a video call")
    missing = run_cli("feedback", str(uuid.uuid4()), "--ack", "--log-schema", log_schema)
    assert missing.returncode == 2 and len(missing.stderr.strip().splitlines()) == 1
    assert "no alert" in missing.stderr
