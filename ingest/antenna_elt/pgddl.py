"""Schema set-up that any number of commands may run at once (both ingestors, notify).

``create schema if not exists`` and ``create table if not exists`` are not safe against
each other: two sessions can both see the name free and one then fails on the catalog's
unique index (``duplicate key value violates unique constraint
"pg_namespace_nspname_index"``). Every command that creates its tables at start therefore
runs its DDL under one transaction-level advisory lock: concurrent first runs take turns,
and the later ones find everything in place.
"""

from __future__ import annotations

from typing import Any

DDL_LOCK_KEY = 7_311_000
"""``pg_advisory_xact_lock`` key of all the project's start-up DDL (the alert publisher's
lock is 7_311_001)."""


def run_ddl(conn: Any, ddl: Any) -> None:
    """Run ``ddl`` (a string or a composed ``psycopg.sql`` statement) in the caller's
    open transaction, under the DDL lock (released when that transaction ends)."""
    conn.execute("select pg_advisory_xact_lock(%s)", (DDL_LOCK_KEY,))
    conn.execute(ddl)
