"""Superset's side of the project's PostgreSQL: its metadata database and the read-only
login role it reads the marts with."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from antenna_elt.devstack.postgres_roles import create_owned_database, set_password
from antenna_elt.devstack.venvs import last_line
from antenna_elt.errors import UserError
from antenna_elt.identifiers import check_identifier
from antenna_elt.settings import Settings


def connect(settings: Settings, dbname: str | None = None) -> Any:
    import psycopg

    conninfo = settings.conninfo(dbname=dbname) if dbname else settings.pg_conninfo
    try:
        return psycopg.connect(conninfo, connect_timeout=5, autocommit=True)
    except psycopg.OperationalError as exc:
        raise UserError(
            f"PostgreSQL at {settings.pg_conninfo} does not answer ({last_line(str(exc))}): "
            "start it with `make up` (or point PGHOST/PGPORT at a running server)"
        ) from None


def ensure_metadata_database(settings: Settings, name: str) -> bool:
    """Create Superset's metadata database, owned by the project's role and closed to every
    other role, if missing; True when created."""
    return create_owned_database(settings, name, "metadata database")


def drop_metadata_database(settings: Settings, name: str) -> None:
    from psycopg import sql

    check_identifier(name, "metadata database", "superset")
    with connect(settings, "postgres") as conn:
        conn.execute(
            sql.SQL("drop database if exists {} with (force)").format(sql.Identifier(name))
        )


def ensure_reader_role(settings: Settings, reader: str, marts_schema: str, password: str) -> None:
    """The login role Superset reads the marts with: usage on the marts schema and select
    on its tables, now and for the tables dbt creates later; nothing on raw, rejects or
    alerts."""
    from psycopg import sql

    check_identifier(marts_schema, "marts schema", "analytics_marts")
    check_identifier(reader, "reader role", "superset_reader")
    role, schema = sql.Identifier(reader), sql.Identifier(marts_schema)
    with connect(settings) as conn:
        owner = conn.execute("select current_user").fetchone()[0]
        if not conn.execute("select 1 from pg_roles where rolname = %s", (reader,)).fetchone():
            conn.execute(sql.SQL("create role {} login").format(role))
        # a new role has neither SUPERUSER, REPLICATION nor BYPASSRLS, and a role that is
        # not a superuser (the project's) may not even name them
        conn.execute(
            sql.SQL("alter role {} with login nocreatedb nocreaterole noinherit").format(role)
        )
        set_password(conn, reader, password)
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

    check_identifier(reader, "reader role", "superset_reader")
    with connect(settings) as conn:
        if conn.execute("select 1 from pg_roles where rolname = %s", (reader,)).fetchone():
            # the creator of a role holds ADMIN on it but not its privileges, which
            # DROP OWNED needs (PostgreSQL 16): take them for the drop
            conn.execute(
                sql.SQL("grant {} to current_user with inherit true").format(sql.Identifier(reader))
            )
            conn.execute(sql.SQL("drop owned by {}").format(sql.Identifier(reader)))
            conn.execute(sql.SQL("drop role {}").format(sql.Identifier(reader)))


def reader_uri(settings: Settings, reader: str, password: str) -> str:
    """The read-only role's connection, password included: Superset keeps it encrypted
    with its secret key in the metadata database."""
    host = settings.pg_env.get("PGHOST", "127.0.0.1")
    port = settings.pg_env.get("PGPORT", str(settings.pg_port))
    dbname = settings.pg_env.get("PGDATABASE", "antenna_elt")
    return f"postgresql+psycopg2://{reader}:{quote(password, safe='')}@{host}:{port}/{dbname}"


def metadata_uri(settings: Settings, dbname: str) -> str:
    """Superset's own connection, as the project's role, without a password: libpq finds
    it in the local stack's password file (``passfile``), or in the user's own PGPASSWORD
    or ~/.pgpass for an external server."""
    host = settings.pg_env.get("PGHOST", "127.0.0.1")
    port = settings.pg_env.get("PGPORT", str(settings.pg_port))
    user = quote(settings.pg_env.get("PGUSER", "antenna_elt"), safe="")
    query = "".join(f"?passfile={quote(v, safe='/')}" for v in settings.pg_child_env.values())
    return f"postgresql+psycopg2://{user}@{host}:{port}/{dbname}{query}"
