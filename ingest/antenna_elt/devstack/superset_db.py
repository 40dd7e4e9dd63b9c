"""Superset's side of the project's PostgreSQL: its metadata database and the read-only
login role it reads the marts with."""

from __future__ import annotations

import re
from typing import Any

from antenna_elt.devstack.venvs import last_line
from antenna_elt.errors import UserError
from antenna_elt.settings import Settings

_IDENTIFIER = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


def check_identifier(name: str, what: str) -> str:
    if not _IDENTIFIER.match(name):
        raise UserError(
            f"{what} {name!r} is not a plain lowercase PostgreSQL identifier "
            "(letters, digits, underscores)"
        )
    return name


def connect(settings: Settings, dbname: str | None = None) -> Any:
    import psycopg

    conninfo = settings.pg_conninfo + (f" dbname={dbname}" if dbname else "")
    try:
        return psycopg.connect(conninfo, connect_timeout=5, autocommit=True)
    except psycopg.OperationalError as exc:
        raise UserError(
            f"PostgreSQL at {settings.pg_conninfo} does not answer ({last_line(str(exc))}): "
            "start it with `make up` (or point PGHOST/PGPORT at a running server)"
        ) from None


def ensure_metadata_database(settings: Settings, name: str) -> bool:
    """Create Superset's metadata database if missing; True when created."""
    from psycopg import sql

    check_identifier(name, "metadata database")
    with connect(settings, "postgres") as conn:
        if conn.execute("select 1 from pg_database where datname = %s", (name,)).fetchone():
            created = False
        else:
            conn.execute(sql.SQL("create database {}").format(sql.Identifier(name)))
            created = True
        # only Superset's own connection (the project's role) uses it
        conn.execute(sql.SQL("revoke all on database {} from public").format(sql.Identifier(name)))
    return created


def drop_metadata_database(settings: Settings, name: str) -> None:
    from psycopg import sql

    check_identifier(name, "metadata database")
    with connect(settings, "postgres") as conn:
        conn.execute(
            sql.SQL("drop database if exists {} with (force)").format(sql.Identifier(name))
        )


def ensure_reader_role(settings: Settings, reader: str, marts_schema: str, password: str) -> None:
    """The login role Superset reads the marts with: usage on the marts schema and select
    on its tables, now and for the tables dbt creates later; nothing on raw, rejects or
    alerts."""
    from psycopg import sql

    check_identifier(marts_schema, "marts schema")
    check_identifier(reader, "reader role")
    role, schema = sql.Identifier(reader), sql.Identifier(marts_schema)
    with connect(settings) as conn:
        owner = conn.execute("select current_user").fetchone()[0]
        if not conn.execute("select 1 from pg_roles where rolname = %s", (reader,)).fetchone():
            conn.execute(sql.SQL("create role {} login").format(role))
        conn.execute(
            sql.SQL(
                "alter role {} with login nosuperuser nocreatedb nocreaterole noinherit password {}"
            ).format(role, sql.Literal(password))
        )
        conn.execute(sql.SQL("alter role {} set default_transaction_read_only = on").format(role))
        # dbt (as the project's role) creates the schema on its first build; creating it
        # here lets the grants exist before that
        conn.execute(sql.SQL("create schema if not exists {}").format(schema))
        conn.execute(sql.SQL("grant usage on schema {} to {}").format(schema, role))
        conn.execute(sql.SQL("grant select on all tables in schema {} to {}").format(schema, role))
        # dbt re-creates table marts on every build: new tables must stay readable
        conn.execute(
            sql.SQL(
                "alter default privileges for role {} in schema {} grant select on tables to {}"
            ).format(sql.Identifier(owner), schema, role)
        )
        # nothing on any other schema (raw, rejects, alerts, staging), whatever was granted before
        others = conn.execute(
            "select nspname from pg_namespace where nspname <> %s and nspname not like 'pg\\_%%' "
            "and nspname <> 'information_schema' and has_schema_privilege(%s, oid, 'usage')",
            (marts_schema, reader),
        ).fetchall()
        for (other,) in others:
            if other == "public":
                continue
            conn.execute(
                sql.SQL("revoke all on all tables in schema {} from {}").format(
                    sql.Identifier(other), role
                )
            )
            conn.execute(
                sql.SQL("revoke all on schema {} from {}").format(sql.Identifier(other), role)
            )


def drop_reader_role(settings: Settings, reader: str) -> None:
    """Drop the role and every privilege granted to it (tests use a role of their own)."""
    from psycopg import sql

    check_identifier(reader, "reader role")
    with connect(settings) as conn:
        if conn.execute("select 1 from pg_roles where rolname = %s", (reader,)).fetchone():
            conn.execute(sql.SQL("drop owned by {}").format(sql.Identifier(reader)))
            conn.execute(sql.SQL("drop role {}").format(sql.Identifier(reader)))


def reader_uri(settings: Settings, reader: str, password: str) -> str:
    from urllib.parse import quote

    host = settings.pg_env.get("PGHOST", "127.0.0.1")
    port = settings.pg_env.get("PGPORT", str(settings.pg_port))
    dbname = settings.pg_env.get("PGDATABASE", "antenna_elt")
    return f"postgresql+psycopg2://{reader}:{quote(password, safe='')}@{host}:{port}/{dbname}"


def metadata_uri(settings: Settings, dbname: str) -> str:
    from urllib.parse import quote

    host = settings.pg_env.get("PGHOST", "127.0.0.1")
    port = settings.pg_env.get("PGPORT", str(settings.pg_port))
    user = settings.pg_env.get("PGUSER", "antenna_elt")
    password = settings.pg_env.get("PGPASSWORD")
    auth = quote(user, safe="") + (f":{quote(password, safe='')}" if password else "")
    return f"postgresql+psycopg2://{auth}@{host}:{port}/{dbname}"
