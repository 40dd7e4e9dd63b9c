"""Quota-breach alerts, exactly once (``antenna-elt notify``), and users' feedback on them
(``antenna-elt feedback``).

The breach logic stays in dbt (``fct_quota_breaches``); this is the delivery on top.

Design (a transactional outbox with a read-back on recovery):

1. Every breach row of the mart is upserted into the alert log
   ``alerts.quota_breach_log`` under a stable alert id (uuid5 of user id and hour). A new
   row is ``pending``; an existing row only gets the latest usage, overage and ratio.
2. Under a PostgreSQL advisory lock (so concurrent runs take turns), the pending rows are
   published to Kafka ``quota-alerts`` (key = user id) with an idempotent producer, and
   marked ``sent`` with the partition and offset Kafka gave them, in the same transaction.
3. A run killed after publishing and before its commit leaves rows ``pending`` whose
   messages are already in the topic. Before publishing, every run therefore reads the
   topic from the last recorded offset and marks the alert ids it finds as sent instead of
   sending them again. So each user-hour gets exactly one message, however often and
   however concurrently ``notify`` runs, and wherever it is killed.
"""

from __future__ import annotations

import logging
import os
import time
import uuid
from datetime import datetime
from typing import Any

import orjson
from psycopg import sql

from antenna_elt.errors import UserError
from antenna_elt.identifiers import check_identifier
from antenna_elt.pgddl import run_ddl
from antenna_elt.settings import Settings

log = logging.getLogger("antenna_elt.notify")

ALERT_NAMESPACE = uuid.UUID("6c1f5a52-4f0e-4a47-9a39-3d0b2f0a9e11")
LOCK_KEY = 7_311_001  # pg_advisory_xact_lock key of the publisher

DDL = """
create schema if not exists {schema};
create table if not exists {schema}.quota_breach_log (
    alert_id        uuid primary key,
    user_id         text        not null,
    user_name       text,
    email           text        not null,
    hour_start      timestamp   not null,
    usage_bytes     bigint      not null,
    quota_bytes     bigint      not null,
    overage_bytes   bigint      not null,
    usage_ratio     double precision not null,
    status          text        not null default 'pending' check (status in ('pending', 'sent')),
    created_at      timestamptz not null default now(),
    updated_at      timestamptz not null default now(),
    sent_at         timestamptz,
    sent_usage_bytes bigint,
    kafka_topic     text,
    kafka_partition integer,
    kafka_offset    bigint,
    acknowledged_at timestamptz,
    feedback_text   text
);
comment on table {schema}.quota_breach_log is
    'One row per user-hour over quota: the alert sent for it (once) and the user''s feedback.';
"""


def alert_id(user_id: str, hour_start: datetime) -> uuid.UUID:
    """Stable id of the alert of one user-hour."""
    return uuid.uuid5(ALERT_NAMESPACE, f"{user_id}|{hour_start:%Y-%m-%dT%H:00:00}")


def _connect(settings: Settings) -> Any:
    import psycopg

    try:
        return psycopg.connect(settings.pg_conninfo, connect_timeout=5)
    except psycopg.OperationalError as exc:
        raise UserError(
            f"cannot reach PostgreSQL ({settings.pg_conninfo}): start it with `make up` ({str(exc).strip()})"
        ) from None


def record_breaches(conn: Any, marts_schema: str, log_schema: str) -> int:
    """Upsert the mart's breaches that the log does not hold as they are; returns how many
    rows are new.

    The comparison is one query: the runner calls this after every build, over a mart that
    holds every breach of history, and a row-by-row upsert of all of them took seconds a
    cycle at 10M events (issue 14); only new breaches and changed usage are written.
    """
    import psycopg

    # concurrent first runs take turns
    run_ddl(conn, sql.SQL(DDL).format(schema=sql.Identifier(log_schema)))
    try:
        rows = conn.execute(
            sql.SQL(
                "select b.user_id, b.user_name, b.email, b.hour_start, b.usage_bytes, b.quota_bytes, "
                "b.overage_bytes, b.usage_ratio "
                "from {} as b left join {} as l on l.user_id = b.user_id and l.hour_start = b.hour_start "
                "where l.usage_bytes is distinct from b.usage_bytes"
            ).format(sql.Identifier(marts_schema, "fct_quota_breaches"), _log_table(log_schema))
        ).fetchall()
    except psycopg.errors.UndefinedTable:
        raise UserError(
            f"{marts_schema}.fct_quota_breaches does not exist: run `dbt build` first"
        ) from None
    if not rows:
        return 0
    with conn.cursor() as cur:
        cur.executemany(
            sql.SQL(
                "insert into {} (alert_id, user_id, user_name, email, hour_start, "
                "usage_bytes, quota_bytes, overage_bytes, usage_ratio) values (%s, %s, %s, %s, %s, %s, %s, %s, %s) "
                "on conflict (alert_id) do update set usage_bytes = excluded.usage_bytes, "
                "overage_bytes = excluded.overage_bytes, usage_ratio = excluded.usage_ratio, updated_at = now() "
                "where quota_breach_log.usage_bytes is distinct from excluded.usage_bytes "
                "returning (xmax = 0) as inserted"
            ).format(_log_table(log_schema)),
            [
                (alert_id(user_id, hour), user_id, name, email, hour, usage, quota, overage, ratio)
                for user_id, name, email, hour, usage, quota, overage, ratio in rows
            ],
            returning=True,
        )
        new = 0
        while True:
            result = cur.fetchone()
            new += bool(result and result[0])
            if not cur.nextset():
                break
    return new


def _log_table(log_schema: str) -> sql.Identifier:
    return sql.Identifier(log_schema, "quota_breach_log")


def message(row: dict[str, Any]) -> bytes:
    return orjson.dumps(
        {
            "alert_id": str(row["alert_id"]),
            "user_id": row["user_id"],
            "name": row["user_name"],
            "email": row["email"],
            "hour": row["hour_start"].strftime("%Y-%m-%dT%H:%M:%SZ"),
            "usage": row["usage_bytes"],
            "quota": row["quota_bytes"],
            "overage": row["overage_bytes"],
            "ratio": row["usage_ratio"],
        }
    )


def _already_published(
    settings: Settings, topic: str, after: dict[int, int]
) -> dict[str, tuple[int, int]]:
    """Alert ids found in the topic after the recorded offsets: {alert id: (partition, offset)}."""
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap_servers.split(","), enable_auto_commit=False
    )
    try:
        partitions = consumer.partitions_for_topic(topic) or set()
        if not partitions:
            return {}
        tps = [TopicPartition(topic, p) for p in sorted(partitions)]
        consumer.assign(tps)
        ends = consumer.end_offsets(tps)
        found: dict[str, tuple[int, int]] = {}
        for tp in tps:
            start = after.get(tp.partition, -1) + 1
            if start >= ends[tp]:
                continue
            consumer.seek(tp, start)
        remaining = {tp for tp in tps if after.get(tp.partition, -1) + 1 < ends[tp]}
        deadline = time.monotonic() + 60
        while remaining and time.monotonic() < deadline:
            for tp, records in consumer.poll(timeout_ms=500).items():
                for record in records:
                    try:
                        found[orjson.loads(record.value)["alert_id"]] = (
                            tp.partition,
                            record.offset,
                        )
                    except (orjson.JSONDecodeError, KeyError, TypeError):
                        continue
                    if record.offset + 1 >= ends[tp]:
                        remaining.discard(tp)
        if remaining:
            raise UserError(
                f"could not read {topic} back to check for alerts already sent; try again"
            )
        return found
    finally:
        consumer.close()


def publish_pending(settings: Settings, conn: Any, log_schema: str, topic: str) -> int:
    """Send every pending alert once; returns how many messages were sent by this run."""
    from psycopg.rows import dict_row

    with conn.transaction():
        conn.execute("select pg_advisory_xact_lock(%s)", (LOCK_KEY,))
        with conn.cursor(row_factory=dict_row) as cur:
            pending = cur.execute(
                sql.SQL(
                    "select * from {} where status = 'pending' order by hour_start, email"
                ).format(_log_table(log_schema))
            ).fetchall()
        if not pending:
            return 0
        recorded = dict(
            conn.execute(
                sql.SQL(
                    "select kafka_partition, max(kafka_offset) from {} "
                    "where status = 'sent' and kafka_topic = %s group by 1"
                ).format(_log_table(log_schema)),
                (topic,),
            ).fetchall()
        )
        seen = _already_published(settings, topic, recorded)
        to_send = []
        for row in pending:
            where = seen.get(str(row["alert_id"]))
            if where is not None:  # published by a run that died before its commit
                _mark_sent(conn, log_schema, row, topic, where)
                log.info(
                    "alert %s for %s was already in %s; marked sent",
                    row["alert_id"],
                    row["email"],
                    topic,
                )
            else:
                to_send.append(row)
        delivered = _produce(settings, topic, to_send)
        if settings.notify_failpoint == "after-publish":
            os._exit(137)  # fault injection for the tests: die between publish and log write
        for row in to_send:
            _mark_sent(conn, log_schema, row, topic, delivered[str(row["alert_id"])])
            log.info(
                "alert %s sent to %s: %s used %d of %d bytes in %s",
                row["alert_id"], topic, row["email"], row["usage_bytes"], row["quota_bytes"],
                row["hour_start"].strftime("%Y-%m-%d %H:00"),
            )  # fmt: skip
    return len(to_send)


def _mark_sent(
    conn: Any, log_schema: str, row: dict[str, Any], topic: str, where: tuple[int, int]
) -> None:
    conn.execute(
        sql.SQL(
            "update {} set status = 'sent', sent_at = now(), "
            "sent_usage_bytes = usage_bytes, kafka_topic = %s, kafka_partition = %s, kafka_offset = %s "
            "where alert_id = %s"
        ).format(_log_table(log_schema)),
        (topic, where[0], where[1], row["alert_id"]),
    )


def _produce(
    settings: Settings, topic: str, rows: list[dict[str, Any]]
) -> dict[str, tuple[int, int]]:
    if not rows:
        return {}
    from confluent_kafka import Producer

    delivered: dict[str, tuple[int, int]] = {}
    errors: list[str] = []

    def on_delivery(error: Any, msg: Any) -> None:
        if error is not None:
            errors.append(str(error))
        else:
            delivered[orjson.loads(msg.value())["alert_id"]] = (msg.partition(), msg.offset())

    producer = Producer(
        {
            "bootstrap.servers": settings.kafka_bootstrap_servers,
            "enable.idempotence": True,
            "acks": "all",
            "log_level": 0,
        }
    )
    for row in rows:
        producer.produce(
            topic, key=row["user_id"].encode(), value=message(row), on_delivery=on_delivery
        )
    remaining = producer.flush(60)
    if remaining or errors or len(delivered) != len(rows):
        raise UserError(
            f"Kafka at {settings.kafka_bootstrap_servers} did not confirm {len(rows) - len(delivered)} alerts"
            + (f" ({errors[0]})" if errors else "")
            + "; they stay pending and the next run checks the topic before sending them"
        )
    return delivered


def notify_once(
    settings: Settings, marts_schema: str, log_schema: str, topic: str
) -> tuple[int, int]:
    check_identifier(marts_schema, "marts schema", "analytics_marts")
    check_identifier(log_schema, "alert log schema", "alerts")
    conn = _connect(settings)
    try:
        with conn.transaction():
            new = record_breaches(conn, marts_schema, log_schema)
        sent = publish_pending(settings, conn, log_schema, topic)
    finally:
        conn.close()
    return new, sent


def record_feedback(
    settings: Settings, alert_id_text: str, log_schema: str, ack: bool, text: str | None
) -> tuple[str, datetime]:
    """Acknowledge an alert and/or record feedback on it; returns its (email, hour)."""
    if not ack and text is None:
        raise UserError("say what to record: --ack, --text TEXT, or both")
    check_identifier(log_schema, "alert log schema", "alerts")
    try:
        alert = uuid.UUID(alert_id_text)
    except ValueError:
        raise UserError(
            f"{alert_id_text!r} is not an alert id (a UUID from the alert message)"
        ) from None
    conn = _connect(settings)
    try:
        with conn.transaction():
            row = conn.execute(
                sql.SQL(
                    "update {} set "
                    "acknowledged_at = case when %s then coalesce(acknowledged_at, now()) else acknowledged_at end, "
                    "feedback_text = coalesce(%s, feedback_text) where alert_id = %s returning email, hour_start"
                ).format(_log_table(log_schema)),
                (ack, text, alert),
            ).fetchone()
    finally:
        conn.close()
    if row is None:
        raise UserError(f"no alert {alert} in {log_schema}.quota_breach_log")
    return row[0], row[1]


__all__ = ["alert_id", "notify_once", "record_feedback"]
