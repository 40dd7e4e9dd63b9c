"""Superset dashboards over the marts: install, start, import the assets, stop.

``antenna-elt dashboards up`` does everything a person needs to look at the marts:

1. installs Apache Superset (pinned, shared/KNOWN.md) into its own virtualenv under
   ``.stack/superset/venv`` (once; a stamp file names the pinned requirements);
2. creates on the project's PostgreSQL a ``superset`` metadata database and a read-only
   login role, ``superset_reader``, that may read the marts schema and nothing else
   (usage on the schema, select on its tables, default privileges so that tables dbt
   re-creates stay readable; no access to raw events, rejects or alerts);
3. writes ``superset_config.py`` (mode 600, no secret in it: the secret key is read from a
   file beside it, the metadata database's password from the local stack's password file);
4. migrates the metadata database, creates the ``admin`` user (password generated once,
   printed, and handed to Superset on stdin, never on a command line), ``superset init``;
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

import dataclasses
import json
import os
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from antenna_elt.devstack.secrets import read_or_create_secret, write_private
from antenna_elt.devstack.service import Service
from antenna_elt.devstack.superset_bundle import BUNDLE_DIR, Bundle, missing_marts, render_bundle
from antenna_elt.devstack.superset_db import (
    ensure_metadata_database,
    ensure_reader_role,
    last_line,
    metadata_uri,
    reader_uri,
)
from antenna_elt.devstack.superset_install import ensure_installed, requirements_stamp, say
from antenna_elt.errors import UserError
from antenna_elt.settings import PROJECT_ROOT, Settings, process_environment

DEFAULT_METADATA_DB = "superset"
READER_ROLE = "superset_reader"
ADMIN_USER = "admin"
START_TIMEOUT = 180.0

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

# Runs inside Superset's interpreter: creates the admin user, or sets its password when it
# exists (a password file removed since). The password comes on stdin: a command line is
# readable by every user of the machine (ps, /proc/<pid>/cmdline).
ADMIN_SCRIPT = """
import sys
from superset.app import create_app

app = create_app()
with app.app_context():
    from superset import security_manager as sm

    username, email = sys.argv[1], sys.argv[2]
    password = sys.stdin.readline().strip()
    if not password:
        sys.exit("no admin password on stdin")
    user = sm.find_user(username=username)
    if user is None:
        role = sm.find_role(sm.auth_role_admin) or sm.add_role(sm.auth_role_admin)
        if not sm.add_user(username, "Antenna", "Admin", email, role, password=password):
            sys.exit(f"could not create the Superset user {username!r}")
    else:
        sm.reset_password(user.id, password)
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


def default_instance(settings: Settings, port: int, marts_schema: str) -> Instance:
    return Instance(
        home=settings.home / "superset",
        port=port,
        metadata_db=DEFAULT_METADATA_DB,
        marts_schema=marts_schema,
    )


# -- 3. config, 4. metadata --------------------------------------------------------------


def write_config(instance: Instance, settings: Settings) -> bool:
    """Write ``superset_config.py``; True when its text changed."""
    instance.home.mkdir(parents=True, exist_ok=True)
    secret_key_file = instance.home / "secret-key"
    read_or_create_secret(secret_key_file, 42)
    text = CONFIG_TEMPLATE.format(
        secret_key_file=str(secret_key_file),
        metadata_uri=metadata_uri(settings, instance.metadata_db),
    )
    if instance.config_file.exists() and instance.config_file.read_text() == text:
        return False
    write_private(instance.config_file, text)
    return True


def superset_env(instance: Instance) -> dict[str, str]:
    return {
        **process_environment(),
        "SUPERSET_CONFIG_PATH": str(instance.config_file),
        "SUPERSET_HOME": str(instance.home / "home"),
        "FLASK_APP": "superset",
        "PYTHONUNBUFFERED": "1",
    }


def _superset(instance: Instance, *args: str, what: str, stdin: str | None = None) -> None:
    """``superset ARGS`` (or ``python -c SCRIPT ARGS`` when ``args[0]`` is ``-c``) in
    Superset's environment; ``stdin`` feeds it what must stay off its command line."""
    program = instance.bin("python" if args[0] == "-c" else "superset")
    proc = subprocess.run(
        [str(program), *args],
        input=stdin,
        capture_output=True,
        text=True,
        env=superset_env(instance),
        cwd=instance.home,
    )
    if proc.returncode != 0:
        out = (proc.stdout + proc.stderr).strip()
        (instance.home / "setup.log").write_text(out + "\n")
        command = "superset " + " ".join(args[:2]) if args[0] != "-c" else "python -c ..."
        raise UserError(
            f"`{command}` ({what}) failed: {last_line(out)} "
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
    say(f"preparing the metadata database {instance.metadata_db} (db upgrade, admin, init)...")
    _superset(instance, "db", "upgrade", what="migrating the metadata database")
    _superset(
        instance,
        "-c",
        ADMIN_SCRIPT,
        ADMIN_USER,
        "admin@antenna-elt.invalid",
        what="creating the admin user or setting its password",
        stdin=password + "\n",
    )
    _superset(instance, "init", what="creating roles and permissions")
    stamp.write_text(stamp_text)
    say(f"metadata ready in {time.monotonic() - started:.0f} s")
    return password


# -- 5. the server ---------------------------------------------------------------------


def service(instance: Instance) -> Service:
    return Service(
        name="Superset",
        port=instance.port,
        pidfile=instance.pidfile,
        logfile=instance.logfile,
        answers=lambda: healthy(instance),
        start_timeout=START_TIMEOUT,
        port_taken_hint=(
            "stop it, or choose another port with --port or ANTENNA_ELT_SUPERSET_PORT"
        ),
        answer_target=f" {instance.url}/health",
        # gunicorn leads its own session: a SIGKILL must reach its workers too
        stop_group=True,
    )


def running(instance: Instance) -> tuple[int, int | None] | None:
    """(pid, port) of the Superset this instance's home started, if it still runs."""
    return service(instance).pidfile_entry()


def running_pid(instance: Instance) -> int | None:
    return service(instance).running_pid()


def healthy(instance: Instance, timeout: float = 2.0) -> bool:
    try:
        with urllib.request.urlopen(f"{instance.url}/health", timeout=timeout) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def start(instance: Instance) -> str:
    """Start Superset unless this instance already runs; wait for /health."""
    entry = running(instance)
    if entry is not None and entry[1] != instance.port:
        pid, port = entry
        raise UserError(
            f"Superset already runs from {instance.home} on port {port} (pid {pid}): use "
            f"--port {port}, or stop it with `antenna-elt dashboards down --port {port}`"
        )
    server = service(instance)
    started = time.monotonic()
    pid, new = server.start(
        lambda: server.spawn(
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
            cwd=instance.home,
            env=superset_env(instance),
        )
    )
    if not new:
        return f"already running (pid {pid}, {instance.url})"
    return (
        f"started (pid {pid}, {instance.url}, log {instance.logfile}) "
        f"in {time.monotonic() - started:.0f} s"
    )


def stop(instance: Instance) -> str:
    pid = service(instance).stop()
    return "not running" if pid is None else f"stopped (pid {pid})"


# -- 6. the bundle ---------------------------------------------------------------------


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
            f"importing {BUNDLE_DIR.name}/ into Superset failed: {last_line(out)} "
            f"(full output in {instance.home / 'import.log'})"
        )


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
    say(f"read-only role {instance.reader_role} may read schema {instance.marts_schema} only")
    if write_config(instance, settings) and running_pid(instance) is not None:
        # e.g. a stack upgraded to password authentication: the running Superset still
        # connects the old way
        say(f"configuration changed: superset {stop(instance)}")
    admin_password = ensure_metadata(instance, settings, created_db)
    say(f"superset {start(instance)}")
    bundle = render_bundle(
        instance.marts_schema, reader_uri(settings, instance.reader_role, reader_password)
    )
    import_bundle(instance, bundle)
    say(
        f"imported {len(bundle.dashboards)} dashboards, {bundle.charts} charts, "
        f"{bundle.datasets} datasets over schema {instance.marts_schema}"
    )
    missing = missing_marts(settings, instance.marts_schema)
    if missing:
        say(
            f"schema {instance.marts_schema} lacks {', '.join(missing)}: the charts show errors "
            "until `dbt build` (or `make demo`) has built the marts"
        )
    return Running(instance, admin_password, bundle)


def status(instance: Instance) -> tuple[str, int, Instance] | None:
    """("running" or "not answering", pid, the instance on its actual port), or None
    when stopped."""
    entry = running(instance)
    if entry is None:
        return None
    pid, port = entry
    if port is not None:
        instance = dataclasses.replace(instance, port=port)
    return ("running" if healthy(instance) else "not answering"), pid, instance
