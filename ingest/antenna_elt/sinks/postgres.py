"""PostgreSQL sink: rows, rejects and next offsets in one transaction, written with COPY."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from typing import Any

from antenna_elt.errors import UserError
from antenna_elt.identifiers import check_identifier
from antenna_elt.ingest.batch import Batch, RejectRow, Row
from antenna_elt.ingest.sink import SinkUnavailable, StaleBatch, first_line
from antenna_elt.pgddl import run_ddl
from antenna_elt.schema import EVENTS, REJECTS, postgres_columns

log = logging.getLogger("antenna_elt.ingest.postgres")

DDL = (
    """
create schema if not exists {schema};

create table if not exists {schema}.device_usage (
"""
    + postgres_columns(EVENTS).replace("{", "{{").replace("}", "}}")
    + """
);
-- tables landed before ingest_seq existed get it (their rows: this transaction's id)
alter table {schema}.device_usage
    add column if not exists ingest_seq bigint not null default (pg_current_xact_id()::text::bigint);
-- No primary key on (topic, partition, offset): the offsets table, updated in the same
-- transaction, already makes every offset land once, and the key's index would cost half
-- the COPY time. A BRIN index serves the time-range scans of dbt's incremental models;
-- autosummarize lets autovacuum summarize each filled block range, without which rows
-- appended since the last VACUUM are in no summary and every incremental run reads them all.
create index if not exists device_usage_event_time_brin
    on {schema}.device_usage using brin (event_time) with (autosummarize = on);
alter index {schema}.device_usage_event_time_brin set (autosummarize = on);
create index if not exists device_usage_ingest_seq_brin
    on {schema}.device_usage using brin (ingest_seq) with (autosummarize = on);
comment on table {schema}.device_usage is
    'Valid events of the devices topic, one row per Kafka offset (antenna-elt ingest postgres).';

create table if not exists {schema}.device_usage_rejects (
"""
    + postgres_columns(REJECTS).replace("{", "{{").replace("}", "}}")
    + """
);
comment on table {schema}.device_usage_rejects is
    'Messages that break the event contract, with the reason (antenna-elt ingest postgres).';

create table if not exists {schema}.ingest_offsets (
    consumer_group  text        not null,
    topic           text        not null,
    partition       integer     not null,
    next_offset     bigint      not null,
    updated_at      timestamptz not null default now(),
    primary key (consumer_group, topic, partition)
);
comment on table {schema}.ingest_offsets is
    'Next Kafka offset per partition, written in the same transaction as the rows.';
"""
)
"""The landing tables (``DDL.format(schema=...)``): events and rejects as in
:mod:`antenna_elt.schema`, and the offsets table."""


COPY_CHUNK = 2_000
"""Messages validated and sent to the server at a time within a batch's COPY."""

# COPY's text format: backslash, tab, newline and carriage return must be escaped
_COPY_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})


def _is_unavailable(exc: BaseException) -> bool:
    import psycopg

    return isinstance(exc, psycopg.OperationalError | psycopg.errors.AdminShutdown) or (
        isinstance(exc, psycopg.InterfaceError) and "closed" in str(exc)
    )


class PostgresSink:
    """Land batches in ``<schema>.device_usage`` and ``<schema>.device_usage_rejects``."""

    def __init__(self, conninfo: str, schema: str, consumer_group: str):
        # libpq also reads PGPASSWORD, PGSSLMODE, ... from the environment itself
        self.conninfo = conninfo
        # written into every statement below: a plain name only (the CLI checks it first)
        self.schema = check_identifier(schema, "landing schema", "raw")
        self.group = consumer_group
        self.description = f"PostgreSQL {schema}.device_usage"
        self._conn: Any = None
        self._time_cache: dict[int, str] = {}
        self._app_cache: dict[str, str] = {}

    # -- connection --------------------------------------------------------------------

    def _connection(self) -> Any:
        import psycopg

        if self._conn is not None and not self._conn.closed:
            return self._conn
        try:
            self._conn = psycopg.connect(
                self.conninfo,
                autocommit=False,
                connect_timeout=5,
                application_name=f"antenna-elt {self.group}",
            )
        except psycopg.OperationalError as exc:
            raise SinkUnavailable(first_line(exc)) from exc
        return self._conn

    def _drop_connection(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(Exception):
                self._conn.close()
        self._conn = None

    # -- Sink protocol ---------------------------------------------------------------

    def setup(self) -> None:
        import psycopg

        try:
            conn = self._connection()
            with conn.transaction():
                run_ddl(conn, DDL.format(schema=self.schema))  # concurrent first runs take turns
        except SinkUnavailable as exc:
            raise UserError(
                f"cannot reach PostgreSQL ({self.conninfo}): {exc}; start it with `make up` "
                "or set PGHOST/PGPORT/PGUSER/PGDATABASE"
            ) from None
        except psycopg.Error as exc:
            raise UserError(
                f"cannot create the landing tables in schema {self.schema!r}: {exc}"
            ) from None

    def stored_offsets(self, topic: str, partitions: Iterable[int]) -> dict[int, int]:
        parts = list(partitions)
        try:
            conn = self._connection()
            with conn.transaction():
                rows = conn.execute(
                    f"select partition, next_offset from {self.schema}.ingest_offsets "
                    "where consumer_group = %s and topic = %s and partition = any(%s)",
                    (self.group, topic, parts),
                ).fetchall()
        except Exception as exc:
            if _is_unavailable(exc):
                self._drop_connection()
                raise SinkUnavailable(first_line(exc)) from exc
            raise
        return {int(p): int(o) for p, o in rows}

    def write(self, batch: Batch) -> tuple[int, int]:
        # validated a chunk at a time while the server stores the chunk before: COPY
        # takes rows as they arrive, so its work overlaps the validation's
        chunks = (
            batch.split(start, start + COPY_CHUNK) for start in range(0, len(batch), COPY_CHUNK)
        )
        return self._write(batch.topic, chunks, batch.first_offsets, batch.next_offsets)

    def write_rows(
        self,
        topic: str,
        rows: list[Row],
        rejects: list[RejectRow],
        first_offsets: dict[int, int],
        next_offsets: dict[int, int],
    ) -> tuple[int, int]:
        """Write validated rows covering ``first_offsets`` up to ``next_offsets`` of each
        partition, with those next offsets, in one transaction (the Spark ingestor's
        driver calls this with rows its executors validated)."""
        return self._write(topic, iter([(rows, rejects)]), first_offsets, next_offsets)

    def _write(
        self,
        topic: str,
        chunks: Iterator[tuple[list[Row], list[RejectRow]]],
        first_offsets: dict[int, int],
        next_offsets: dict[int, int],
    ) -> tuple[int, int]:
        import psycopg

        try:
            conn = self._connection()
            with conn.transaction():
                self._check_offsets(conn, topic, first_offsets)
                counts = self._copy(conn, topic, chunks)
                self._store_offsets(conn, topic, next_offsets)
        except StaleBatch:
            raise
        except psycopg.errors.UniqueViolation as exc:  # rejects keep a primary key
            raise StaleBatch(f"offsets already stored ({exc.diag.message_detail})") from exc
        except Exception as exc:
            if _is_unavailable(exc):
                self._drop_connection()
                raise SinkUnavailable(first_line(exc)) from exc
            raise
        return counts

    def close(self) -> None:
        self._drop_connection()

    # -- steps ---------------------------------------------------------------------------

    def _check_offsets(self, conn: Any, topic: str, first_offsets: dict[int, int]) -> None:
        """Lock the offsets row of every partition of the batch for this transaction and
        refuse a batch that starts below the stored offset (another writer got there).

        The row is created if the partition was never written (next offset -1 until
        :meth:`_store_offsets` sets it, in this same transaction, so nobody ever sees it):
        a ``select ... for update`` locks nothing where no row exists, and the raw table has
        no key, so two writers of a partition's first batch (a zombie after a rebalance)
        both committed it. With the row in place the second writer waits for the first
        to commit, then sees its offset. Partitions are locked in one order (sorted), so
        two writers never deadlock."""
        stored: dict[int, int] = {}
        with conn.cursor() as cur:
            for partition in sorted(first_offsets):
                cur.execute(
                    f"insert into {self.schema}.ingest_offsets as o "
                    "(consumer_group, topic, partition, next_offset) values (%s, %s, %s, -1) "
                    "on conflict (consumer_group, topic, partition) "
                    "do update set next_offset = o.next_offset returning o.next_offset",
                    (self.group, topic, partition),
                )
                row = cur.fetchone()
                stored[partition] = int(row[0]) if row else -1
        for partition, first in first_offsets.items():
            if stored[partition] > first:
                raise StaleBatch(
                    f"partition {partition} is already stored up to offset {stored[partition]} "
                    f"but this batch starts at {first}"
                )

    def _event_time(self, ts: int) -> str:
        """COPY text of an epoch second, cached: a batch holds few distinct seconds."""
        cache = self._time_cache
        value = cache.get(ts)
        if value is None:
            if len(cache) > 100_000:
                cache.clear()
            value = cache[ts] = datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S+00")
        return value

    def _app(self, app: str) -> str:
        """COPY text of an app name (escaped), cached: there are few distinct apps."""
        cache = self._app_cache
        value = cache.get(app)
        if value is None:
            if len(cache) > 10_000:
                cache.clear()
            value = cache[app] = app.translate(_COPY_ESCAPES)
        return value

    def _copy(
        self, conn: Any, topic: str, chunks: Iterator[tuple[list[Row], list[RejectRow]]]
    ) -> tuple[int, int]:
        """COPY the chunks' rows as they come, then their rejects; (rows, rejects) written."""
        # COPY text built with one f-string a row: about three times cheaper than
        # write_row. The UUIDs were validated as hex, so only the app needs escaping.
        topic_text = topic.translate(_COPY_ESCAPES)
        event_time = self._event_time
        app_text = self._app
        rejects: list[RejectRow] = []
        written = 0
        with conn.cursor() as cur, contextlib.ExitStack() as open_copy:
            copy = None
            for rows, chunk_rejects in chunks:
                rejects += chunk_rejects
                if not rows:
                    continue
                if copy is None:  # opened at the first row: a batch of rejects has none
                    columns = ", ".join(EVENTS.written_names)
                    copy = open_copy.enter_context(
                        cur.copy(f"copy {self.schema}.device_usage ({columns}) from stdin")
                    )
                copy.write(
                    "".join(
                        [
                            f"{event_time(ts)}\t{device}\t{antenna}\t{nbytes}\t{app_text(app)}\t{topic_text}\t{partition}\t{offset}\n"
                            for ts, device, antenna, nbytes, app, partition, offset in rows
                        ]
                    ).encode()
                )
                written += len(rows)
        if rejects:
            columns = ", ".join(REJECTS.written_names)
            with (
                conn.cursor() as cur,
                cur.copy(f"copy {self.schema}.device_usage_rejects ({columns}) from stdin") as copy,
            ):
                for partition, offset, value, reason in rejects:
                    copy.write_row((topic, partition, offset, value, reason))
        return written, len(rejects)

    def _store_offsets(self, conn: Any, topic: str, next_offsets: dict[int, int]) -> None:
        with conn.cursor() as cur:
            cur.executemany(
                f"insert into {self.schema}.ingest_offsets "
                "(consumer_group, topic, partition, next_offset, updated_at) "
                "values (%s, %s, %s, %s, now()) "
                "on conflict (consumer_group, topic, partition) do update "
                "set next_offset = excluded.next_offset, updated_at = excluded.updated_at",
                [(self.group, topic, p, o) for p, o in sorted(next_offsets.items())],
            )
