"""Who may log in to the local PostgreSQL, and with what (``antenna-elt stack up``).

Every role logs in with a password (scram-sha-256); the passwords are generated once and
kept under ``.stack/secrets/`` (mode 700, files mode 600, ignored by git):

- ``postgres``, initdb's bootstrap superuser; password in ``superuser-password``. Used by
  ``stack up`` only, for the steps that need a superuser: creating the project's role and
  setting its attributes and password, creating the project's database owned by it, and
  upgrading a cluster made by an older version. Nothing else logs in as it.
- ``antenna_elt``, the project's role (what ``PGUSER`` names by default): LOGIN,
  NOSUPERUSER, NOREPLICATION, NOBYPASSRLS; owns the project database (``PGDATABASE``) and
  so every schema the ingestors, dbt and ``notify`` create in it. Two extra attributes,
  for the dashboards: CREATEROLE (Superset's read-only role; on PostgreSQL 16 such a role
  can only manage roles it created, and never make a superuser) and CREATEDB (Superset's
  metadata database, through :func:`create_owned_database`). Its password is in the libpq
  password file ``pgpass``, where the settings point libpq (``PGPASSFILE``), so every
  client finds it without a password in a connection string, flag or environment.
- Roles the project creates itself (``superset_reader``) get their own generated password.

A cluster initialised by a version before this one trusted every local connection and had
the project's role as its bootstrap superuser (which PostgreSQL never lets lose SUPERUSER).
:func:`ensure_access` upgrades it in place: a temporary superuser renames the bootstrap role
to ``postgres`` (with its new password), a new ``antenna_elt`` role takes over the databases
and everything in them, and the caller then writes the password-only ``pg_hba.conf``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from antenna_elt.devstack.secrets import (
    new_password,
    private_dir,
    read_or_create_secret,
    write_private,
)
from antenna_elt.errors import UserError
from antenna_elt.identifiers import check_identifier
from antenna_elt.settings import DEFAULT_PG_DATABASE, DEFAULT_PG_USER, PASSFILE_NAME, Settings

SUPERUSER = "postgres"
PROJECT_ROLE = DEFAULT_PG_USER
PROJECT_ROLE_ATTRIBUTES = "login nosuperuser createdb createrole noreplication nobypassrls inherit"
BOOTSTRAP_OID = 10
"""initdb's bootstrap superuser, whatever it is named."""
UPGRADE_ROLE = "antenna_elt_upgrade"
"""A superuser that lives only while an older cluster's bootstrap role is renamed."""


# -- the secrets -----------------------------------------------------------------------


def superuser_password_file(settings: Settings) -> Path:
    return settings.secrets_dir / "superuser-password"


def passfile(settings: Settings) -> Path:
    return settings.secrets_dir / PASSFILE_NAME


def superuser_password(settings: Settings) -> str:
    private_dir(settings.secrets_dir)
    return read_or_create_secret(superuser_password_file(settings))


def project_password(settings: Settings) -> str:
    """The project role's password, from the libpq password file (written when missing)."""
    private_dir(settings.secrets_dir)
    path = passfile(settings)
    if path.exists():
        for line in path.read_text().splitlines():
            fields = line.split(":")
            if len(fields) == 5 and fields[3] == PROJECT_ROLE and fields[4]:
                if path.stat().st_mode & 0o077:
                    path.chmod(0o600)  # libpq ignores a password file others can read
                return fields[4]
    password = new_password()
    write_private(
        path,
        "# libpq password file of the local PostgreSQL (written by `antenna-elt stack up`)\n"
        + "".join(f"{host}:*:*:{PROJECT_ROLE}:{password}\n" for host in ("127.0.0.1", "localhost")),
    )
    return password


# -- connections -------------------------------------------------------------------------


def _connect(conninfo: str) -> Any:
    import psycopg

    return psycopg.connect(conninfo, connect_timeout=10, autocommit=True)


def _local(settings: Settings, **params: str) -> str:
    """A TCP connection string to the local server (never the user's PGHOST)."""
    return settings.conninfo(host="127.0.0.1", port=str(settings.pg_port), **params)


def admin_connect(settings: Settings, dbname: str = "postgres") -> Any:
    """A connection as the bootstrap superuser (``stack up``'s own steps only)."""
    return _connect(
        _local(settings, user=SUPERUSER, dbname=dbname, password=superuser_password(settings))
    )


def can_log_in(settings: Settings, user: str, password: str) -> bool:
    import psycopg

    try:
        _connect(_local(settings, user=user, dbname="postgres", password=password)).close()
    except psycopg.OperationalError:
        return False
    return True


def set_password(conn: Any, role: str, password: str) -> None:
    """``alter role ... password`` with a SCRAM verifier computed here: the password itself
    never reaches the server (nor its logs)."""
    from psycopg import sql

    verifier = conn.pgconn.encrypt_password(password.encode(), role.encode(), b"scram-sha-256")
    conn.execute(
        sql.SQL("alter role {} password {}").format(
            sql.Identifier(role), sql.Literal(verifier.decode())
        )
    )


# -- roles and databases -------------------------------------------------------------------


def ensure_access(settings: Settings) -> bool:
    """Make the running local server's roles what the module docstring says; True when a
    cluster of an older version was upgraded. The caller writes pg_hba.conf afterwards."""
    import psycopg

    superuser_password(settings)
    upgraded = False
    try:
        admin = admin_connect(settings)
    except psycopg.OperationalError as exc:
        if not _upgrade_bootstrap_role(settings):
            raise UserError(
                f"cannot log in to the local PostgreSQL as {SUPERUSER} with the password in "
                f"{superuser_password_file(settings)} ({str(exc).strip().splitlines()[-1]}); "
                "if that file was lost, `make down`, then remove .stack/postgres to start a new "
                "cluster (this deletes the local data)"
            ) from None
        upgraded = True
        admin = admin_connect(settings)
    with admin:
        _ensure_project_role(settings, admin)
        upgraded |= _adopt_bootstrap_databases(settings, admin)
        _administer_existing_roles(admin)
        _ensure_project_database(settings, admin)
    return upgraded


def _upgrade_bootstrap_role(settings: Settings) -> bool:
    """A cluster of an older version (trust, bootstrap superuser named like the project
    role): rename the bootstrap role to ``postgres`` with its password. False when the
    server is not such a cluster."""
    import psycopg
    from psycopg import sql

    try:
        legacy = _connect(
            _local(settings, user=PROJECT_ROLE, dbname="postgres", passfile="/dev/null")
        )
    except psycopg.OperationalError:
        return False
    with legacy:
        row = legacy.execute(
            "select oid from pg_roles where rolname = current_user and rolsuper"
        ).fetchone()
        if row is None or row[0] != BOOTSTRAP_OID:
            return False
        if not legacy.execute(
            "select 1 from pg_roles where rolname = %s", (UPGRADE_ROLE,)
        ).fetchone():
            legacy.execute(
                sql.SQL("create role {} superuser login").format(sql.Identifier(UPGRADE_ROLE))
            )
    # the bootstrap role cannot rename itself: the temporary superuser does (trust still holds)
    with _connect(
        _local(settings, user=UPGRADE_ROLE, dbname="postgres", passfile="/dev/null")
    ) as conn:
        conn.execute(
            sql.SQL("alter role {} rename to {}").format(
                sql.Identifier(PROJECT_ROLE), sql.Identifier(SUPERUSER)
            )
        )
        set_password(conn, SUPERUSER, superuser_password(settings))
    return True


def _ensure_project_role(settings: Settings, admin: Any) -> None:
    from psycopg import sql

    role = sql.Identifier(PROJECT_ROLE)
    admin.execute(sql.SQL("drop role if exists {}").format(sql.Identifier(UPGRADE_ROLE)))
    if not admin.execute("select 1 from pg_roles where rolname = %s", (PROJECT_ROLE,)).fetchone():
        admin.execute(sql.SQL("create role {}").format(role))
    admin.execute(sql.SQL(f"alter role {{}} with {PROJECT_ROLE_ATTRIBUTES}").format(role))
    password = project_password(settings)
    stored = admin.execute(
        "select rolpassword is not null from pg_authid where rolname = %s", (PROJECT_ROLE,)
    ).fetchone()
    if not (stored and stored[0] and can_log_in(settings, PROJECT_ROLE, password)):
        set_password(admin, PROJECT_ROLE, password)


# Statements giving what the bootstrap role owns in one database to the project role, by
# kind: schemas; tables, views and composite types (their indexes and column sequences
# follow); other sequences; routines; enums, domains and ranges. Extension members and the
# system schemas are left alone.
_USER_SCHEMA = "n.nspname !~ '^pg_' and n.nspname <> 'information_schema'"
_NOT_EXTENSION = "not exists (select from pg_depend d where d.objid = {oid} and d.deptype = 'e')"
_ADOPT = (
    f"""select format('alter schema %%I owner to %%I', n.nspname, %(role)s::text)
    from pg_namespace n where n.nspowner = 10 and {_USER_SCHEMA}""",
    f"""select format('alter %%s %%s owner to %%I', case c.relkind when 'v' then 'view'
        when 'm' then 'materialized view' when 'f' then 'foreign table' when 'c' then 'type'
        else 'table' end, c.oid::regclass, %(role)s::text)
    from pg_class c join pg_namespace n on n.oid = c.relnamespace
    where c.relowner = 10 and c.relkind in ('r', 'p', 'v', 'm', 'f', 'c') and {_USER_SCHEMA}
        and {_NOT_EXTENSION.format(oid="c.oid")}""",
    f"""select format('alter sequence %%s owner to %%I', c.oid::regclass, %(role)s::text)
    from pg_class c join pg_namespace n on n.oid = c.relnamespace
    where c.relowner = 10 and c.relkind = 'S' and {_USER_SCHEMA}
        and {_NOT_EXTENSION.format(oid="c.oid")}""",
    f"""select format('alter routine %%s owner to %%I', p.oid::regprocedure, %(role)s::text)
    from pg_proc p join pg_namespace n on n.oid = p.pronamespace
    where p.proowner = 10 and {_USER_SCHEMA} and {_NOT_EXTENSION.format(oid="p.oid")}""",
    f"""select format('alter %%s %%s owner to %%I', case t.typtype when 'd' then 'domain'
        else 'type' end, t.oid::regtype, %(role)s::text)
    from pg_type t join pg_namespace n on n.oid = t.typnamespace
    where t.typowner = 10 and t.typtype in ('e', 'd', 'r') and {_USER_SCHEMA}
        and {_NOT_EXTENSION.format(oid="t.oid")}""",
)


def _adopt_bootstrap_databases(settings: Settings, admin: Any) -> bool:
    """Databases the bootstrap role owns (an older cluster: the project's, Superset's ...)
    pass to the project role with everything in them. True when there were any."""
    from psycopg import sql

    names = [
        name
        for (name,) in admin.execute(
            "select datname from pg_database where datdba = %s and datallowconn "
            "and datname not in ('postgres', 'template0', 'template1') order by 1",
            (BOOTSTRAP_OID,),
        ).fetchall()
    ]
    for name in names:
        with admin_connect(settings, name) as conn:
            for query in _ADOPT:
                for (statement,) in conn.execute(query, {"role": PROJECT_ROLE}).fetchall():
                    conn.execute(statement)
        # last, so that a run cut short finds the database again and finishes its objects
        admin.execute(
            sql.SQL("alter database {} owner to {}").format(
                sql.Identifier(name), sql.Identifier(PROJECT_ROLE)
            )
        )
    return bool(names)


def _administer_existing_roles(admin: Any) -> None:
    """Roles an older cluster's superuser made (Superset's reader) become the project
    role's to manage, as if it had created them: ADMIN, without their privileges."""
    from psycopg import sql

    rows = admin.execute(
        "select r.rolname from pg_roles r where not r.rolsuper and r.rolname !~ '^pg_' "
        "and r.rolname <> %s and not exists (select from pg_auth_members m "
        "where m.roleid = r.oid and m.member = %s::regrole and m.admin_option)",
        (PROJECT_ROLE, PROJECT_ROLE),
    ).fetchall()
    for (name,) in rows:
        admin.execute(
            sql.SQL("grant {} to {} with admin true, inherit false, set false").format(
                sql.Identifier(name), sql.Identifier(PROJECT_ROLE)
            )
        )


def _ensure_project_database(settings: Settings, admin: Any) -> None:
    from psycopg import sql

    dbname = settings.pg_env.get("PGDATABASE", DEFAULT_PG_DATABASE)
    row = admin.execute(
        "select pg_get_userbyid(datdba) from pg_database where datname = %s", (dbname,)
    ).fetchone()
    if row is None:
        admin.execute(
            sql.SQL("create database {} owner {}").format(
                sql.Identifier(dbname), sql.Identifier(PROJECT_ROLE)
            )
        )
    elif row[0] != PROJECT_ROLE:
        admin.execute(
            sql.SQL("alter database {} owner to {}").format(
                sql.Identifier(dbname), sql.Identifier(PROJECT_ROLE)
            )
        )


def create_owned_database(settings: Settings, name: str, what: str) -> bool:
    """Create database ``name`` as the project's role (so it owns it; CREATEDB) unless it
    exists, and let no other role connect to it. For the metadata databases of the tools
    beside the project (Superset's; Airflow's the same way). True when created."""
    import psycopg
    from psycopg import sql

    check_identifier(name, what, "superset")
    try:
        conn = _connect(settings.conninfo(dbname="postgres"))
    except psycopg.OperationalError as exc:
        raise UserError(
            f"PostgreSQL at {settings.pg_conninfo} does not answer "
            f"({str(exc).strip().splitlines()[-1]}): start it with `make up` (or point "
            "PGHOST/PGPORT at a running server)"
        ) from None
    with conn:
        if conn.execute("select 1 from pg_database where datname = %s", (name,)).fetchone():
            created = False
        else:
            conn.execute(sql.SQL("create database {}").format(sql.Identifier(name)))
            created = True
        conn.execute(sql.SQL("revoke all on database {} from public").format(sql.Identifier(name)))
    return created
