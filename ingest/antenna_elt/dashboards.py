"""Superset dashboards over the marts: install, start, import the assets, stop.

``antenna-elt dashboards up`` does everything a person needs to look at the marts:

1. installs Apache Superset (pinned, shared/KNOWN.md) into its own virtualenv under
   ``.stack/superset/venv`` (once; a stamp file names the pinned requirements);
2. creates on the project's PostgreSQL a ``superset`` metadata database and a read-only
   login role, ``superset_reader``, that may read the marts schema and nothing else
   (usage on the schema, select on its tables, default privileges so that tables dbt
   re-creates stay readable; no access to raw events, rejects or alerts);
3. writes ``superset_config.py`` (secret key generated once and kept beside it);
4. migrates the metadata database, creates the ``admin`` user (password generated once,
   printed), ``superset init``;
5. starts Superset (gunicorn) on 127.0.0.1 in the background, pid and log under
   ``.stack/superset``, and waits for ``/health``; a running instance is left alone;
6. imports the bundle in ``dashboards/`` with Superset's ImportAssetsCommand, which
   overwrites changed assets, filling in the read-only role's connection string and the
   marts schema (the bundle holds neither);
7. prints the URL of each dashboard.

Everything Superset-specific runs in Superset's own interpreter (a subprocess); this module
only imports the standard library, psycopg and PyYAML.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import os
import re
import secrets
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from antenna_elt.argtypes import port_number
from antenna_elt.config import PROJECT_ROOT, Settings
from antenna_elt.errors import UserError
from antenna_elt.processes import pid_alive, port_open, stop_pid, tail

BUNDLE_DIR = PROJECT_ROOT / "dashboards"
DEFAULT_PORT = 8088
DEFAULT_METADATA_DB = "superset"
READER_ROLE = "superset_reader"
ADMIN_USER = "admin"
START_TIMEOUT = 180.0
MARTS_TOKEN = "__MARTS_SCHEMA__"

# shared/KNOWN.md: 6.1.0 misses rich and cachetools in its declared dependencies;
# flask-caching 2.5 breaks `superset db upgrade`.
REQUIREMENTS = (
    "apache-superset==6.1.0",
    "psycopg2-binary",
    "rich",
    "cachetools",
    "flask-caching<2.5",
)

_IDENTIFIER = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")

CONFIG_TEMPLATE = """\
# Written by `antenna-elt dashboards up`; rewritten on every run. Secrets live beside it.
from pathlib import Path

SECRET_KEY = Path({secret_key_file!r}).read_text().strip()
SQLALCHEMY_DATABASE_URI = {metadata_uri!r}
# SQLite would break two datasets with one table name (shared/KNOWN.md); no Redis/Celery.
CACHE_CONFIG = {{"CACHE_TYPE": "SimpleCache", "CACHE_DEFAULT_TIMEOUT": 300}}
# the dashboards refresh every 10 s: keep query results for less than that
DATA_CACHE_CONFIG = {{"CACHE_TYPE": "SimpleCache", "CACHE_DEFAULT_TIMEOUT": 5}}
RATELIMIT_STORAGE_URI = "memory://"
TALISMAN_ENABLED = False
SUPERSET_WEBSERVER_TIMEOUT = 120
ROW_LIMIT = 10000
"""

# Runs inside Superset's interpreter: imports the rendered bundle with ImportAssetsCommand
# (overwrites databases, datasets, charts and dashboards that already exist by uuid).
IMPORT_SCRIPT = """
import json, sys
from superset.app import create_app

app = create_app()
with app.app_context():
    from flask import g
    from superset import security_manager
    from superset.commands.importers.v1.assets import ImportAssetsCommand

    with open(sys.argv[1]) as f:
        contents = json.load(f)
    g.user = security_manager.find_user(username=sys.argv[2])
    if g.user is None:
        sys.exit(f"no Superset user {sys.argv[2]!r}")
    try:
        ImportAssetsCommand(contents).run()
    except Exception as exc:  # one line for the parent to show
        detail = getattr(exc, "normalized_messages", lambda: None)() or exc
        sys.exit(f"import failed: {detail}")
"""


@dataclass(frozen=True)
class Instance:
    """One Superset: where it keeps its files, its port, its metadata database."""

    home: Path
    """config, secrets, pid and log files"""
    port: int
    metadata_db: str
    marts_schema: str
    reader_role: str = READER_ROLE
    """the read-only login role Superset reads the marts with"""
    venv: Path = PROJECT_ROOT / ".stack" / "superset" / "venv"
    """shared by every instance of this checkout (like the Kafka jars)"""

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pidfile(self) -> Path:
        return self.home / "superset.pid"

    @property
    def logfile(self) -> Path:
        return self.home / "superset.log"

    @property
    def config_file(self) -> Path:
        return self.home / "superset_config.py"

    @property
    def admin_password_file(self) -> Path:
        return self.home / "admin-password"

    @property
    def reader_password_file(self) -> Path:
        return self.home / "reader-password"

    def bin(self, name: str) -> Path:
        return self.venv / "bin" / name


def default_marts_schema() -> str:
    return f"{os.environ.get('ANTENNA_ELT_DBT_SCHEMA') or 'analytics'}_marts"


def default_instance(settings: Settings, port: int, marts_schema: str) -> Instance:
    return Instance(
        home=settings.home / "superset",
        port=port,
        metadata_db=DEFAULT_METADATA_DB,
        marts_schema=marts_schema,
    )


# -- small helpers ---------------------------------------------------------------------


def _log(message: str) -> None:
    print(f"dashboards: {message}", flush=True)


def _check_identifier(name: str, what: str) -> str:
    if not _IDENTIFIER.match(name):
        raise UserError(
            f"{what} {name!r} is not a plain lowercase PostgreSQL identifier "
            "(letters, digits, underscores)"
        )
    return name


def read_or_create_secret(path: Path, nbytes: int = 32) -> str:
    """A secret generated once and kept in ``path`` (mode 600)."""
    if path.exists():
        value = path.read_text().strip()
        if value:
            return value
    path.parent.mkdir(parents=True, exist_ok=True)
    value = secrets.token_urlsafe(nbytes)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(value + "\n")
    return value


def _last_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1].strip() if lines else "(no output)"


# -- 1. install ------------------------------------------------------------------------


def requirements_stamp(venv: Path) -> Path:
    digest = hashlib.sha256("\n".join(REQUIREMENTS).encode()).hexdigest()[:16]
    return venv / f".installed-{digest}"


def ensure_installed(venv: Path) -> bool:
    """Install Superset into ``venv`` unless the stamp of these requirements is there.
    Returns True when it installed."""
    stamp = requirements_stamp(venv)
    if stamp.exists() and (venv / "bin" / "superset").exists():
        return False
    started = time.monotonic()
    _log(f"installing Apache Superset into {venv} (once; about 800 MB, 1-3 minutes)...")
    if not (venv / "bin" / "python").exists():
        proc = subprocess.run(
            [sys.executable, "-m", "venv", str(venv)], capture_output=True, text=True
        )
        if proc.returncode != 0:
            raise UserError(
                f"could not create the Superset virtualenv {venv}: {_last_line(proc.stderr)}; "
                "install python3-venv (`apt-get install -y python3-venv`) and retry"
            )
    proc = subprocess.run(
        [
            str(venv / "bin" / "pip"),
            "install",
            "--quiet",
            "--disable-pip-version-check",
            *REQUIREMENTS,
        ],
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0:
        raise UserError(
            f"pip could not install Superset ({_last_line(proc.stdout + proc.stderr)}); check "
            f"that PyPI is reachable, or delete {venv} and retry"
        )
    for old in venv.glob(".installed-*"):
        old.unlink()
    stamp.touch()
    _log(f"installed Superset in {time.monotonic() - started:.0f} s")
    return True


# -- 2. PostgreSQL: metadata database and read-only role --------------------------------


def _connect(settings: Settings, dbname: str | None = None) -> Any:
    import psycopg

    conninfo = settings.pg_conninfo + (f" dbname={dbname}" if dbname else "")
    try:
        return psycopg.connect(conninfo, connect_timeout=5, autocommit=True)
    except psycopg.OperationalError as exc:
        raise UserError(
            f"PostgreSQL at {settings.pg_conninfo} does not answer ({_last_line(str(exc))}): "
            "start it with `make up` (or point PGHOST/PGPORT at a running server)"
        ) from None


def ensure_metadata_database(settings: Settings, name: str) -> bool:
    """Create Superset's metadata database if missing; True when created."""
    from psycopg import sql

    _check_identifier(name, "metadata database")
    with _connect(settings, "postgres") as conn:
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

    _check_identifier(name, "metadata database")
    with _connect(settings, "postgres") as conn:
        conn.execute(
            sql.SQL("drop database if exists {} with (force)").format(sql.Identifier(name))
        )


def ensure_reader_role(settings: Settings, reader: str, marts_schema: str, password: str) -> None:
    """The login role Superset reads the marts with: usage on the marts schema and select
    on its tables, now and for the tables dbt creates later; nothing on raw, rejects or
    alerts."""
    from psycopg import sql

    _check_identifier(marts_schema, "marts schema")
    _check_identifier(reader, "reader role")
    role, schema = sql.Identifier(reader), sql.Identifier(marts_schema)
    with _connect(settings) as conn:
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

    _check_identifier(reader, "reader role")
    with _connect(settings) as conn:
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


# -- 3. config, 4. metadata --------------------------------------------------------------


def write_config(instance: Instance, settings: Settings) -> None:
    instance.home.mkdir(parents=True, exist_ok=True)
    secret_key_file = instance.home / "secret-key"
    read_or_create_secret(secret_key_file, 42)
    text = CONFIG_TEMPLATE.format(
        secret_key_file=str(secret_key_file),
        metadata_uri=metadata_uri(settings, instance.metadata_db),
    )
    if not instance.config_file.exists() or instance.config_file.read_text() != text:
        instance.config_file.write_text(text)


def superset_env(instance: Instance) -> dict[str, str]:
    return {
        **os.environ,
        "SUPERSET_CONFIG_PATH": str(instance.config_file),
        "SUPERSET_HOME": str(instance.home / "home"),
        "FLASK_APP": "superset",
        "PYTHONUNBUFFERED": "1",
    }


def _superset(instance: Instance, *args: str, what: str) -> None:
    proc = subprocess.run(
        [str(instance.bin("superset")), *args],
        capture_output=True,
        text=True,
        env=superset_env(instance),
        cwd=instance.home,
    )
    if proc.returncode != 0:
        out = (proc.stdout + proc.stderr).strip()
        (instance.home / "setup.log").write_text(out + "\n")
        raise UserError(
            f"`superset {' '.join(args[:2])}` ({what}) failed: {_last_line(out)} "
            f"(full output in {instance.home / 'setup.log'})"
        )


def ensure_metadata(instance: Instance, settings: Settings, created_db: bool) -> str:
    """Migrate the metadata database, create the admin user, `superset init`; skipped when
    a stamp says this was done for this database and these requirements. Returns the admin
    password."""
    password = read_or_create_secret(instance.admin_password_file, 18)
    stamp_text = f"{instance.metadata_db}\n{requirements_stamp(instance.venv).name}\n"
    stamp = instance.home / "metadata.ready"
    if not created_db and stamp.exists() and stamp.read_text() == stamp_text:
        return password
    stamp.unlink(missing_ok=True)
    started = time.monotonic()
    _log(f"preparing the metadata database {instance.metadata_db} (db upgrade, admin, init)...")
    _superset(instance, "db", "upgrade", what="migrating the metadata database")
    _superset(
        instance,
        "fab",
        "create-admin",
        "--username",
        ADMIN_USER,
        "--firstname",
        "Antenna",
        "--lastname",
        "Admin",
        "--email",
        "admin@antenna-elt.invalid",
        "--password",
        password,
        what="creating the admin user",
    )
    # the user may exist from an earlier run whose password file was removed
    _superset(
        instance,
        "fab",
        "reset-password",
        "--username",
        ADMIN_USER,
        "--password",
        password,
        what="setting the admin password",
    )
    _superset(instance, "init", what="creating roles and permissions")
    stamp.write_text(stamp_text)
    _log(f"metadata ready in {time.monotonic() - started:.0f} s")
    return password


# -- 5. the server ---------------------------------------------------------------------


def _pidfile_entry(instance: Instance) -> tuple[int, int] | None:
    """(pid, port) of the Superset this instance started, if it still runs."""
    try:
        fields = [int(x) for x in instance.pidfile.read_text().split()]
    except (OSError, ValueError):
        return None
    if len(fields) != 2:
        return None
    pid, port = fields
    return (pid, port) if pid_alive(pid) else None


def running_pid(instance: Instance) -> int | None:
    entry = _pidfile_entry(instance)
    return entry[0] if entry else None


def healthy(instance: Instance, timeout: float = 2.0) -> bool:
    try:
        with urllib.request.urlopen(f"{instance.url}/health", timeout=timeout) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def start(instance: Instance) -> str:
    """Start Superset unless this instance already runs; wait for /health."""
    entry = _pidfile_entry(instance)
    if entry is not None:
        pid, port = entry
        if port != instance.port:
            raise UserError(
                f"Superset already runs from {instance.home} on port {port} (pid {pid}): use "
                f"--port {port}, or stop it with `antenna-elt dashboards down --port {port}`"
            )
        _wait_healthy(instance, pid)
        return f"already running (pid {pid}, {instance.url})"
    if port_open(instance.port):
        raise UserError(
            f"port {instance.port} is taken by another program: stop it, or choose another "
            "port with --port or ANTENNA_ELT_SUPERSET_PORT"
        )
    with open(instance.logfile, "ab") as log:
        proc = subprocess.Popen(
            [
                str(instance.bin("gunicorn")),
                "--bind",
                f"127.0.0.1:{instance.port}",
                "--workers",
                "2",
                "--worker-class",
                "gthread",
                "--threads",
                "4",
                "--timeout",
                "120",
                "--limit-request-line",
                "0",
                "--limit-request-field_size",
                "0",
                "superset.app:create_app()",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=superset_env(instance),
            cwd=instance.home,
            start_new_session=True,
        )
    instance.pidfile.write_text(f"{proc.pid} {instance.port}\n")
    started = time.monotonic()
    _wait_healthy(instance, proc.pid)
    return (
        f"started (pid {proc.pid}, {instance.url}, log {instance.logfile}) "
        f"in {time.monotonic() - started:.0f} s"
    )


def _wait_healthy(instance: Instance, pid: int) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if not pid_alive(pid):
            raise UserError(
                f"Superset exited while starting; last lines of {instance.logfile}:\n"
                f"{tail(instance.logfile)}"
            )
        if healthy(instance):
            return
        time.sleep(0.5)
    raise UserError(
        f"Superset did not answer {instance.url}/health within {START_TIMEOUT:.0f} s; "
        f"last lines of {instance.logfile}:\n{tail(instance.logfile)}"
    )


def stop(instance: Instance) -> str:
    pid = running_pid(instance)
    if pid is None:
        instance.pidfile.unlink(missing_ok=True)
        return "not running"
    # gunicorn leads its own session: a SIGKILL must reach its workers too
    stop_pid(pid, timeout=30, group=True)
    instance.pidfile.unlink(missing_ok=True)
    return f"stopped (pid {pid})"


# -- 6. the bundle ---------------------------------------------------------------------


@dataclass(frozen=True)
class Bundle:
    contents: dict[str, str]
    """path inside the bundle -> YAML text, marts schema and connection filled in"""
    charts: int
    datasets: int
    dashboards: list[tuple[str, str]]
    """(title, slug)"""


def render_bundle(marts_schema: str, sqlalchemy_uri: str, bundle_dir: Path = BUNDLE_DIR) -> Bundle:
    """Read the bundle's files and fill in what the repository does not hold: the
    database's connection string and the marts schema."""
    import yaml  # type: ignore[import-untyped]  # PyYAML comes with dbt-core

    _check_identifier(marts_schema, "marts schema")
    if not (bundle_dir / "metadata.yaml").exists():
        raise UserError(
            f"{bundle_dir}/metadata.yaml is missing: the dashboards bundle is incomplete"
        )
    contents: dict[str, str] = {}
    charts = datasets = 0
    dashboards: list[tuple[str, str]] = []
    for path in sorted(bundle_dir.rglob("*.yaml")):
        rel = path.relative_to(bundle_dir).as_posix()
        if rel.startswith("screenshots/"):
            continue
        text = path.read_text().replace(MARTS_TOKEN, marts_schema)
        if rel.startswith("databases/"):
            config = yaml.safe_load(text)
            config["sqlalchemy_uri"] = sqlalchemy_uri
            text = yaml.safe_dump(config, sort_keys=False)
        elif rel.startswith("charts/"):
            charts += 1
        elif rel.startswith("datasets/"):
            datasets += 1
        elif rel.startswith("dashboards/"):
            config = yaml.safe_load(text)
            dashboards.append((config["dashboard_title"], config["slug"]))
        contents[rel] = text
    return Bundle(contents, charts, datasets, dashboards)


def import_bundle(instance: Instance, bundle: Bundle) -> None:
    """Import (and overwrite) every asset of ``bundle`` into the instance."""
    with tempfile.NamedTemporaryFile(
        "w", suffix=".json", dir=instance.home, prefix="bundle-", delete=False
    ) as f:
        os.chmod(f.name, 0o600)  # holds the reader's password
        json.dump(bundle.contents, f)
        contents_file = Path(f.name)
    try:
        proc = subprocess.run(
            [str(instance.bin("python")), "-c", IMPORT_SCRIPT, str(contents_file), ADMIN_USER],
            capture_output=True,
            text=True,
            env=superset_env(instance),
            cwd=instance.home,
        )
    finally:
        contents_file.unlink(missing_ok=True)
    if proc.returncode != 0:
        out = (proc.stdout + proc.stderr).strip()
        (instance.home / "import.log").write_text(out + "\n")
        raise UserError(
            f"importing {BUNDLE_DIR.name}/ into Superset failed: {_last_line(out)} "
            f"(full output in {instance.home / 'import.log'})"
        )


# the dbt models the datasets read as plain tables (models/reporting and the marts)
MARTS_READ = (
    "rpt_network_bytes_last_hour",
    "rpt_network_activity_last_hour",
    "rpt_antenna_bandwidth_last_hour",
    "rpt_bytes_hourly",
    "user_quota_limit",
    "fct_devices_active_recent",
)


def missing_marts(settings: Settings, marts_schema: str) -> list[str]:
    """The marts the dashboards read that the schema does not hold (yet)."""
    with _connect(settings) as conn:
        present = {
            name
            for (name,) in conn.execute(
                "select tablename from pg_tables where schemaname = %s", (marts_schema,)
            ).fetchall()
        }
    return [name for name in MARTS_READ if name not in present]


def dashboard_url(instance: Instance, slug: str) -> str:
    return f"{instance.url}/superset/dashboard/{slug}/"


# -- all of it -------------------------------------------------------------------------


@dataclass(frozen=True)
class Running:
    instance: Instance
    admin_password: str
    bundle: Bundle


def up(settings: Settings, instance: Instance) -> Running:
    ensure_installed(instance.venv)
    instance.home.mkdir(parents=True, exist_ok=True)
    reader_password = read_or_create_secret(instance.reader_password_file, 24)
    created_db = ensure_metadata_database(settings, instance.metadata_db)
    ensure_reader_role(settings, instance.reader_role, instance.marts_schema, reader_password)
    _log(f"read-only role {instance.reader_role} may read schema {instance.marts_schema} only")
    write_config(instance, settings)
    admin_password = ensure_metadata(instance, settings, created_db)
    _log(f"superset {start(instance)}")
    bundle = render_bundle(
        instance.marts_schema, reader_uri(settings, instance.reader_role, reader_password)
    )
    import_bundle(instance, bundle)
    _log(
        f"imported {len(bundle.dashboards)} dashboards, {bundle.charts} charts, "
        f"{bundle.datasets} datasets over schema {instance.marts_schema}"
    )
    missing = missing_marts(settings, instance.marts_schema)
    if missing:
        _log(
            f"schema {instance.marts_schema} lacks {', '.join(missing)}: the charts show errors "
            "until `dbt build` (or `make demo`) has built the marts"
        )
    return Running(instance, admin_password, bundle)


# -- CLI -------------------------------------------------------------------------------


def _instance_from_args(args: argparse.Namespace, settings: Settings) -> Instance:
    return default_instance(settings, args.port, args.marts_schema or default_marts_schema())


def _run_up(args: argparse.Namespace, settings: Settings) -> int:
    started = time.monotonic()
    running = up(settings, _instance_from_args(args, settings))
    instance = running.instance
    print(f"Superset: {instance.url}/  (user {ADMIN_USER}, password {running.admin_password})")
    for title, slug in running.bundle.dashboards:
        print(f"  {title}: {dashboard_url(instance, slug)}")
    print(f"dashboards up in {time.monotonic() - started:.1f} s")
    return 0


def _run_down(args: argparse.Namespace, settings: Settings) -> int:
    _log(f"superset {stop(_instance_from_args(args, settings))}")
    return 0


def _run_status(args: argparse.Namespace, settings: Settings) -> int:
    instance = _instance_from_args(args, settings)
    entry = _pidfile_entry(instance)
    if entry is None:
        print("superset: stopped")
        return 1
    pid, port = entry
    instance = dataclasses.replace(instance, port=port)
    state = "running" if healthy(instance) else "not answering"
    print(f"superset: {state} (pid {pid}, {instance.url}/, log {instance.logfile})")
    return 0 if state == "running" else 1


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "dashboards",
        help="install, start and stop Superset with the dashboards over the marts",
        description=(
            "Apache Superset on 127.0.0.1 with the dashboards of dashboards/ (imported as "
            "code), reading the marts through a read-only PostgreSQL role. Installed into "
            ".stack/superset/venv, metadata in the `superset` database of the project's "
            "PostgreSQL."
        ),
    )
    sub = parser.add_subparsers(dest="action", metavar="ACTION")
    sub.required = True
    default_port = os.environ.get("ANTENNA_ELT_SUPERSET_PORT") or str(DEFAULT_PORT)
    for name, func, help_text in (
        (
            "up",
            _run_up,
            "install (once), start (unless running), import the dashboards, print their URLs",
        ),
        ("down", _run_down, "stop the Superset that `up` started"),
        ("status", _run_status, "show whether Superset runs; exit 1 if not"),
    ):
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.add_argument(
            "--port",
            type=port_number,
            default=default_port,
            help=f"port on 127.0.0.1 (default: ANTENNA_ELT_SUPERSET_PORT or {DEFAULT_PORT})",
        )
        p.add_argument(
            "--marts-schema",
            help="schema of the marts (default: <ANTENNA_ELT_DBT_SCHEMA or analytics>_marts)",
        )
        p.set_defaults(func=func)
