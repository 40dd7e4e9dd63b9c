"""The local PostgreSQL: the server binaries shipped by the ``pgserver`` wheel
(PostgreSQL 16), a cluster initialised once in ``<home>/postgres/data``, driven with
``pg_ctl``. PostgreSQL refuses to run as root, so as root it runs as a system user
``antenna-elt``. When ``PGHOST``/``PGPORT`` point elsewhere, that server is left to the
user and only checked."""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import subprocess
import warnings
from pathlib import Path
from typing import Any

from antenna_elt.devstack.processes import pid_alive, stop_pid
from antenna_elt.devstack.service import Service
from antenna_elt.errors import UserError
from antenna_elt.settings import DEFAULT_PG_DATABASE, DEFAULT_PG_USER, Settings

START_TIMEOUT = 60.0
SYSTEM_USER = "antenna-elt"


def pg_dir(settings: Settings) -> Path:
    return settings.home / "postgres"


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


def _ensure_system_user(paths: list[Path]) -> None:
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
        answers=lambda: pg_answers(settings, "postgres"),
        start_timeout=START_TIMEOUT,
        port_taken_hint=(
            "stop it, or set ANTENNA_ELT_PG_PORT to a free port, or PGHOST/PGPORT to use "
            "that server"
        ),
        owns_pidfile=False,
    )


def postgres_pid(settings: Settings) -> int | None:
    return service(settings).running_pid()


def _pg_connect(settings: Settings, dbname: str | None = None, timeout: int = 3) -> Any:
    import psycopg

    conninfo = settings.pg_conninfo
    if dbname:
        conninfo += f" dbname={dbname}"
    return psycopg.connect(conninfo, connect_timeout=timeout, autocommit=True)


def pg_answers(settings: Settings, dbname: str | None = None) -> bool:
    try:
        with _pg_connect(settings, dbname) as conn:
            conn.execute("select 1")
        return True
    except Exception:
        return False


def _init_postgres(settings: Settings) -> None:
    pdir = pg_dir(settings)
    data = pdir / "data"
    if (data / "PG_VERSION").exists():
        return
    pdir.mkdir(parents=True, exist_ok=True)
    if data.exists():
        shutil.rmtree(data)  # a half-initialised cluster from an interrupted run
    data.mkdir(mode=0o700)
    _ensure_system_user([pdir, data])
    proc = subprocess.run(
        _as_server_user(
            [
                str(_pg_bin() / "initdb"),
                "-D",
                str(data),
                "-U",
                DEFAULT_PG_USER,
                "--auth=trust",
                "-E",
                "UTF8",
                "--locale=C",
            ]
        ),
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0:
        raise UserError(f"initdb failed: {(proc.stdout + proc.stderr).strip()[-800:]}")


def _pg_options(settings: Settings) -> str:
    socket_dir = pg_dir(settings)
    return " ".join(
        [
            f"-p {settings.pg_port}",
            "-c listen_addresses=127.0.0.1",
            f"-c unix_socket_directories={socket_dir}",
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
    server = service(settings)
    log = server.logfile

    def launch() -> int | None:
        _init_postgres(settings)
        if os.geteuid() == 0:
            _ensure_system_user([pg_dir(settings)])
            if not log.exists():
                log.touch()
            _ensure_system_user([log])
        proc = _pg_ctl(
            settings,
            "-o",
            _pg_options(settings),
            "-l",
            str(log),
            "-w",
            "-t",
            str(int(START_TIMEOUT)),
            "start",
            check=False,
        )
        if proc.returncode != 0:
            raise UserError(f"PostgreSQL did not start; last lines of {log}:\n{server.tail()}")
        return server.running_pid()

    pid, started = server.start(launch)
    _ensure_database(settings)
    if not started:
        return f"postgres: already running (pid {pid}, 127.0.0.1:{settings.pg_port})"
    return f"postgres: started (pid {pid}, 127.0.0.1:{settings.pg_port}, log {log})"


def _ensure_database(settings: Settings) -> None:
    dbname = settings.pg_env.get("PGDATABASE", DEFAULT_PG_DATABASE)
    with _pg_connect(settings, "postgres") as conn:
        exists = conn.execute("select 1 from pg_database where datname = %s", (dbname,)).fetchone()
        if not exists:
            from psycopg import sql

            conn.execute(sql.SQL("create database {}").format(sql.Identifier(dbname)))


def stop_postgres(settings: Settings) -> str:
    if settings.pg_external:
        return "postgres: external, left alone"

    def fast_shutdown(pid: int) -> None:
        _pg_ctl(settings, "-m", "fast", "-w", "-t", "60", "stop", check=False)
        if pid_alive(pid):
            stop_pid(pid, 10.0, signal.SIGQUIT)

    pid = service(settings).stop(fast_shutdown)
    return "postgres: not running" if pid is None else f"postgres: stopped (pid {pid})"
