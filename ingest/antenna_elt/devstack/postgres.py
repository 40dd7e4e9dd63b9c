"""The local PostgreSQL: the server binaries shipped by the ``pgserver`` wheel
(PostgreSQL 16), a cluster initialised once in ``<home>/postgres/data``, driven with
``pg_ctl``. PostgreSQL refuses to run as root, so as root it runs as a system user
``antenna-elt``. When ``PGHOST``/``PGPORT`` point elsewhere, that server is left to the
user and only checked.

Not open to everyone: it listens on 127.0.0.1 only; ``pg_hba.conf`` (rewritten on every
start) asks every connection, socket or loopback, for a password (scram-sha-256), trusts
none and allows no replication; its socket lives in ``<home>/postgres/socket``, a directory
of mode 700 owned by the server's OS user, so no other OS user can reach it. The roles and
their generated passwords are :mod:`.postgres_roles`. No password is ever passed on a
command line (initdb reads the superuser's from a file of mode 600).
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import subprocess
import warnings
from pathlib import Path

from antenna_elt.devstack import postgres_roles
from antenna_elt.devstack.processes import pid_alive, stop_pid
from antenna_elt.devstack.service import Service
from antenna_elt.errors import UserError
from antenna_elt.settings import Settings

START_TIMEOUT = 60.0
SYSTEM_USER = "antenna-elt"

HBA = """\
# Written by `antenna-elt stack up` on every start: any edit here is replaced.
# Every connection gives a password (scram-sha-256): on the socket, whose directory only
# the server's OS user can enter, and on loopback. No trust, no replication.
# TYPE  DATABASE  USER  ADDRESS        METHOD
local   all       all                  scram-sha-256
host    all       all   127.0.0.1/32   scram-sha-256
host    all       all   ::1/128        scram-sha-256
"""


def pg_dir(settings: Settings) -> Path:
    return settings.home / "postgres"


def socket_dir(settings: Settings) -> Path:
    return pg_dir(settings) / "socket"


SOCKET_PATH_MAX = 107
"""The longest path a Unix-domain socket may have on Linux (sun_path, less its NUL)."""


def check_socket_path(settings: Settings) -> None:
    """Refuse a home whose socket path PostgreSQL cannot create (it would fail to start with
    the reason only in its log)."""
    path = socket_dir(settings) / f".s.PGSQL.{settings.pg_port}"
    length = len(os.fsencode(path))
    if length > SOCKET_PATH_MAX:
        raise UserError(
            f"PostgreSQL's socket {path} would be {length} bytes, over the {SOCKET_PATH_MAX} a "
            f"socket path may have: set ANTENNA_ELT_HOME to a shorter directory than {settings.home}"
        )


def _pg_bin() -> Path:
    try:
        with warnings.catch_warnings():  # pgserver's platformdirs warns without XDG_RUNTIME_DIR
            warnings.simplefilter("ignore")
            import pgserver
    except ImportError:
        raise UserError("the pgserver package is missing: run `make install`") from None
    return Path(pgserver.__file__).resolve().parent / "pginstall" / "bin"


def _as_server_user(cmd: list[str]) -> list[str]:
    """PostgreSQL refuses root: run its tools as the system user ``antenna-elt``."""
    if os.geteuid() != 0:
        return cmd
    return ["runuser", "-u", SYSTEM_USER, "--", *cmd]


def ensure_system_user(paths: list[Path]) -> None:
    """As root: create the server's system user if missing and give it ``paths``."""
    if os.geteuid() != 0:
        return
    try:
        pwd.getpwnam(SYSTEM_USER)
    except KeyError:
        subprocess.run(
            [
                "useradd",
                "--system",
                "--no-create-home",
                "--shell",
                "/usr/sbin/nologin",
                SYSTEM_USER,
            ],
            check=True,
            capture_output=True,
        )
    user = pwd.getpwnam(SYSTEM_USER)
    for path in paths:
        os.chown(path, user.pw_uid, user.pw_gid)
    # the server user must be able to reach its directories through their parents
    for parent in paths[0].parents:
        mode = parent.stat().st_mode
        if not mode & 0o001:
            parent.chmod(mode | 0o001)
        if parent == Path("/"):
            break


def _pg_ctl(settings: Settings, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    data = pg_dir(settings) / "data"
    cmd = _as_server_user([str(_pg_bin() / "pg_ctl"), "-D", str(data), *args])
    return subprocess.run(cmd, capture_output=True, text=True, check=check)


def service(settings: Settings) -> Service:
    return Service(
        name="PostgreSQL",
        port=settings.pg_port,
        pidfile=pg_dir(settings) / "data" / "postmaster.pid",
        logfile=pg_dir(settings) / "server.log",
        answers=lambda: _accepts_connections(settings),
        start_timeout=START_TIMEOUT,
        port_taken_hint=(
            "stop it, or set ANTENNA_ELT_PG_PORT to a free port, or PGHOST/PGPORT to use "
            "that server"
        ),
        owns_pidfile=False,
    )


def postgres_pid(settings: Settings) -> int | None:
    return service(settings).running_pid()


def _accepts_connections(settings: Settings) -> bool:
    """Does the local server accept connections (libpq's ping: no login needed)?"""
    from psycopg import pq

    conninfo = f"host=127.0.0.1 port={settings.pg_port} connect_timeout=3"
    return bool(pq.PGconn.ping(conninfo.encode()) == pq.Ping.OK)


def pg_answers(settings: Settings, dbname: str | None = None) -> bool:
    """Can we log in with the settings (an external server: the user's own credentials)?"""
    import psycopg

    try:
        conninfo = settings.conninfo(dbname=dbname) if dbname else settings.pg_conninfo
        with psycopg.connect(conninfo, connect_timeout=3, autocommit=True) as conn:
            conn.execute("select 1")
        return True
    except Exception:
        return False


def _prepare_directories(settings: Settings) -> None:
    """``<home>/postgres`` (data, log, socket) for the server's OS user alone: mode 700."""
    pdir, sockets = pg_dir(settings), socket_dir(settings)
    sockets.mkdir(mode=0o700, parents=True, exist_ok=True)
    for path in (pdir, sockets):
        path.chmod(0o700)
    log = pdir / "server.log"
    log.touch(mode=0o600)
    log.chmod(0o600)
    ensure_system_user([pdir, sockets, log])


def _init_postgres(settings: Settings) -> None:
    pdir = pg_dir(settings)
    data = pdir / "data"
    if (data / "PG_VERSION").exists():
        return
    pdir.mkdir(mode=0o700, parents=True, exist_ok=True)
    if data.exists():
        shutil.rmtree(data)  # a half-initialised cluster from an interrupted run
    data.mkdir(mode=0o700)
    # initdb reads the bootstrap superuser's password from a file the server user can
    # read (mode 600), never from its command line
    pwfile = pdir / "initdb-password"
    fd = os.open(pwfile, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(postgres_roles.superuser_password(settings) + "\n")
    try:
        ensure_system_user([pdir, data, pwfile])
        proc = subprocess.run(
            _as_server_user(
                [
                    str(_pg_bin() / "initdb"),
                    "-D",
                    str(data),
                    "-U",
                    postgres_roles.SUPERUSER,
                    f"--pwfile={pwfile}",
                    "--auth=scram-sha-256",
                    "-E",
                    "UTF8",
                    "--locale=C",
                ]
            ),
            capture_output=True,
            text=True,
        )
    finally:
        pwfile.unlink(missing_ok=True)
    if proc.returncode != 0:
        raise UserError(f"initdb failed: {(proc.stdout + proc.stderr).strip()[-800:]}")
    _write_hba(settings)  # before the first start: initdb's own allows replication


def _write_hba(settings: Settings) -> bool:
    """Write :data:`HBA` unless the file already holds it; True when it changed."""
    path = pg_dir(settings) / "data" / "pg_hba.conf"
    if path.exists() and path.read_text() == HBA:
        return False
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(HBA)
    if os.geteuid() == 0:  # the server's OS user reads it
        user = pwd.getpwnam(SYSTEM_USER)
        os.chown(path, user.pw_uid, user.pw_gid)
    return True


def _running_socket_dir(settings: Settings) -> str | None:
    """The socket directory the running server uses (line 5 of postmaster.pid)."""
    try:
        lines = (pg_dir(settings) / "data" / "postmaster.pid").read_text().splitlines()
    except OSError:
        return None
    return lines[4].strip() if len(lines) > 4 else None


def _pg_options(settings: Settings) -> str:
    return " ".join(
        [
            f"-p {settings.pg_port}",
            "-c listen_addresses=127.0.0.1",
            f"-c unix_socket_directories={socket_dir(settings)}",
            "-c unix_socket_permissions=0700",
            "-c password_encryption=scram-sha-256",
            "-c shared_buffers=256MB",
            "-c max_connections=100",
            "-c max_wal_size=2GB",
            "-c log_min_messages=warning",
        ]
    )


def start_postgres(settings: Settings) -> str:
    if settings.pg_external:
        if not pg_answers(settings):
            raise UserError(
                f"PostgreSQL at {settings.pg_conninfo} (PGHOST/PGPORT) does not answer; start it "
                "or unset PGHOST and PGPORT to use the local server"
            )
        return f"postgres: external at {settings.pg_conninfo} (PGHOST/PGPORT)"
    check_socket_path(settings)
    server = service(settings)
    log = server.logfile

    def launch(action: str = "start") -> int | None:
        _init_postgres(settings)
        _prepare_directories(settings)
        proc = _pg_ctl(
            settings,
            "-o",
            _pg_options(settings),
            "-l",
            str(log),
            "-w",
            "-t",
            str(int(START_TIMEOUT)),
            *(["-m", "fast"] if action == "restart" else []),
            action,
            check=False,
        )
        if proc.returncode != 0:
            raise UserError(f"PostgreSQL did not start; last lines of {log}:\n{server.tail()}")
        return server.running_pid()

    pid, started = server.start(launch)
    # roles and passwords first: a cluster of an older version is still on trust here
    upgraded = postgres_roles.ensure_access(settings)
    if _write_hba(settings):
        _pg_ctl(settings, "reload")
    if _running_socket_dir(settings) != str(socket_dir(settings)):
        # started by an older version, its socket open to every OS user: move it
        restarted = launch("restart")
        if restarted is None:
            raise UserError(f"PostgreSQL did not restart; last lines of {log}:\n{server.tail()}")
        server.wait_until_answers(restarted)
        pid = restarted
    address = f"127.0.0.1:{settings.pg_port}"
    if upgraded:
        return (
            f"postgres: upgraded in place to password authentication (pid {pid}, {address}; "
            f"the project role {postgres_roles.PROJECT_ROLE} is no longer a superuser)"
        )
    if not started:
        return f"postgres: already running (pid {pid}, {address})"
    return f"postgres: started (pid {pid}, {address}, log {log})"


def stop_postgres(settings: Settings) -> str:
    if settings.pg_external:
        return "postgres: external, left alone"

    def fast_shutdown(pid: int) -> None:
        _pg_ctl(settings, "-m", "fast", "-w", "-t", "60", "stop", check=False)
        if pid_alive(pid):
            stop_pid(pid, 10.0, signal.SIGQUIT)

    pid = service(settings).stop(fast_shutdown)
    return "postgres: not running" if pid is None else f"postgres: stopped (pid {pid})"
