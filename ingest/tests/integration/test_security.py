"""The local PostgreSQL is not open to everyone, and no name from a flag, the environment or
configuration becomes SQL of its own (issue 13, finding 8).

Against the real local server: password authentication (scram-sha-256) everywhere, the
project's role owns its database and is not a superuser, a wrong or missing password is
refused for every role, another OS user can neither use the socket nor log in without the
password, the generated passwords are private files that git ignores. Every command that
takes a schema name refuses a crafted one with one line and creates nothing. A stack from
an older version (trust, the project role as bootstrap superuser) upgrades itself in place,
and a new one passes no password on a command line.
"""

from __future__ import annotations

import os
import re
import shutil
import stat
import subprocess
import tempfile
import uuid
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from conftest import run_cli
from helpers import recorded_command_lines
from test_ingest_restarts import free_port_pair

from antenna_elt.devstack import postgres as local_pg
from antenna_elt.devstack import superset_db
from antenna_elt.settings import Settings, load_settings

ROOT = Path(__file__).resolve().parents[3]
SUPERUSER = "postgres"
PWNED = "public.rt_pwned"


def pg_bin() -> Path:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import pgserver
    return Path(pgserver.__file__).resolve().parent / "pginstall" / "bin"


def hba_rules(settings: Settings) -> list[list[str]]:
    text = (settings.home / "postgres" / "data" / "pg_hba.conf").read_text()
    return [line.split() for line in text.splitlines() if line.strip() and not line.startswith("#")]


def tcp_conninfo(settings: Settings, user: str, **extra: str) -> str:
    params = {
        "host": "127.0.0.1",
        "port": settings.pg_env["PGPORT"],
        "dbname": settings.pg_env["PGDATABASE"],
        "user": user,
        "connect_timeout": "5",
        **extra,
    }
    return " ".join(f"{k}={v}" for k, v in params.items())


def refusal(conninfo: str) -> str:
    """The error of a connection attempt that must fail (without PGPASSWORD/PGPASSFILE)."""
    saved = {k: os.environ.pop(k) for k in ("PGPASSWORD", "PGPASSFILE") if k in os.environ}
    try:
        with pytest.raises(psycopg.OperationalError) as refused:
            psycopg.connect(conninfo).close()
    finally:
        os.environ.update(saved)
    return str(refused.value)


# -- authentication --------------------------------------------------------------------


def test_pg_hba_allows_only_scram_sha_256_on_the_socket_and_loopback(
    settings: Settings, pg_conn: Any
) -> None:
    rules = hba_rules(settings)
    assert rules, "pg_hba.conf has rules"
    assert all(rule[-1] == "scram-sha-256" for rule in rules), rules
    assert not [rule for rule in rules if "trust" in rule or "replication" in rule[1]], rules
    assert {rule[0] for rule in rules} == {"local", "host"}
    assert {rule[3] for rule in rules if rule[0] == "host"} == {"127.0.0.1/32", "::1/128"}
    assert pg_conn.execute("show password_encryption").fetchone() == ("scram-sha-256",)


def test_the_project_role_owns_its_database_and_is_not_a_superuser(pg_conn: Any) -> None:
    row = pg_conn.execute(
        "select rolname, rolsuper, rolreplication, rolbypassrls, rolcreaterole, rolcreatedb "
        "from pg_roles where rolname = current_user"
    ).fetchone()
    # CREATEROLE: Superset's read-only role; CREATEDB: Superset's metadata database
    assert row == ("antenna_elt", False, False, False, True, True)
    owner = pg_conn.execute(
        "select pg_get_userbyid(datdba) from pg_database where datname = current_database()"
    ).fetchone()
    assert owner == ("antenna_elt",)


def test_a_wrong_or_missing_password_is_refused_for_every_role(
    settings: Settings, pg_conn: Any
) -> None:
    reader = f"reader_{uuid.uuid4().hex[:8]}"
    try:
        superset_db.ensure_reader_role(settings, reader, settings.marts_schema, "the-right-one")
        for role in ("antenna_elt", SUPERUSER, reader):
            wrong = refusal(tcp_conninfo(settings, role, password="wrong"))
            assert f'password authentication failed for user "{role}"' in wrong, (role, wrong)
            missing = refusal(tcp_conninfo(settings, role, passfile="/dev/null"))
            assert "no password supplied" in missing, (role, missing)
        with psycopg.connect(tcp_conninfo(settings, reader, password="the-right-one")) as conn:
            assert conn.execute("select current_user").fetchone() == (reader,)
    finally:
        superset_db.drop_reader_role(settings, reader)


def test_passwords_are_stored_as_scram_verifiers_only(settings: Settings) -> None:
    """The stack's roles have a SCRAM verifier; no role has a password stored any other way
    (a login role without one cannot log in at all: scram-sha-256 needs a verifier)."""
    superuser_password = (settings.home / "secrets" / "superuser-password").read_text().strip()
    with psycopg.connect(
        tcp_conninfo(settings, SUPERUSER, password=superuser_password, dbname="postgres")
    ) as conn:
        rows = dict(
            conn.execute(
                "select rolname, rolpassword like 'SCRAM-SHA-256$%' from pg_authid "
                "where rolpassword is not null"
            ).fetchall()
        )
    assert rows[SUPERUSER] is True and rows["antenna_elt"] is True, rows
    assert all(rows.values()), rows


def run_as_nobody(*cmd: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["runuser", "-u", "nobody", "--", "env", "-i", "PATH=/usr/bin:/bin", *cmd],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_another_os_user_cannot_use_the_socket_nor_log_in_without_the_password(
    settings: Settings,
) -> None:
    port = settings.pg_env["PGPORT"]
    sockets = list((settings.home / "postgres").rglob(f".s.PGSQL.{port}"))
    assert len(sockets) == 1, sockets
    socket_dir = sockets[0].parent
    if os.geteuid() != 0:  # no other user to become: what keeps them out must hold
        mode = socket_dir.stat()
        assert stat.S_IMODE(mode.st_mode) == 0o700 and mode.st_uid == os.geteuid()
        return
    psql = str(pg_bin() / "psql")
    for user, dbname in (("antenna_elt", "antenna_elt"), (SUPERUSER, "postgres")):
        for host in (str(socket_dir), "127.0.0.1"):
            proc = run_as_nobody(
                psql, "-w", "-h", host, "-p", port, "-U", user, "-d", dbname, "-Atc", "select 1"
            )
            assert proc.returncode != 0, f"nobody logged in as {user} through {host}"
            expected = "Permission denied" if host != "127.0.0.1" else "no password supplied"
            assert expected in proc.stderr, (user, host, proc.stderr)
    for secret in (settings.home / "secrets").iterdir():
        assert run_as_nobody("cat", str(secret)).returncode != 0, secret


def test_the_generated_passwords_are_private_files_that_git_ignores(settings: Settings) -> None:
    secrets = settings.home / "secrets"
    assert stat.S_IMODE(secrets.stat().st_mode) == 0o700
    files = sorted(p.name for p in secrets.iterdir())
    assert files == ["pgpass", "superuser-password"]
    for path in secrets.iterdir():
        info = path.stat()
        assert stat.S_IMODE(info.st_mode) == 0o600 and info.st_uid == os.geteuid(), path
        if path.is_relative_to(ROOT):
            ignored = subprocess.run(["git", "check-ignore", "-q", str(path)], cwd=ROOT)
            assert ignored.returncode == 0, f"{path} is not ignored by git"
    tracked = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True)
    for path in secrets.iterdir():
        assert path.read_text().strip() not in tracked.stdout
    # the settings point libpq at the password file of the local stack
    assert settings.pg_env.get("PGPASSFILE", os.environ.get("PGPASSFILE")) == str(
        secrets / "pgpass"
    )


# -- names from flags, the environment and configuration ----------------------------------

CRAFTED = ["x; create table public.rt_pwned (i int); --", PWNED]
# values that did run their `create table` through the command before names were checked
EXPLOITS = {
    "report": "(select now() as timestamp) s; create table public.rt_pwned (i int); select now() --",
    "notify": (
        "(select 1 as user_id, 1 as user_name, 1 as email, 1 as hour_start, 1 as usage_bytes, "
        "1 as quota_bytes, 1 as overage_bytes, 1 as usage_ratio limit 0) s; "
        "create table public.rt_pwned (i int); select 1 limit 0 --"
    ),
}


def schemas(conn: Any) -> set[str]:
    return {name for (name,) in conn.execute("select nspname from pg_namespace").fetchall()}


@pytest.fixture
def nothing_created(pg_conn: Any) -> Iterator[None]:
    pg_conn.execute(f"drop table if exists {PWNED}")
    before = schemas(pg_conn)
    yield
    pwned = pg_conn.execute("select to_regclass(%s)", (PWNED,)).fetchone()
    pg_conn.execute(f"drop table if exists {PWNED}")
    assert pwned == (None,), "the crafted name ran its own SQL"
    # schemas named after the crafted values (the tests on the other worker create schemas
    # of their own meanwhile: comparing every schema failed on theirs)
    crafted = {
        name
        for name in schemas(pg_conn) - before
        if "pwned" in name or not re.fullmatch(r"[a-z0-9_]+", name)
    }
    assert crafted == set()


def assert_refused(proc: subprocess.CompletedProcess[str], names: str) -> None:
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert len(lines) == 1, proc.stderr
    assert names in lines[0], lines[0]
    assert "use lower-case letters, digits and _" in lines[0], lines[0]


FLAG_COMMANDS = {
    "notify --marts-schema": ["notify", "--marts-schema"],
    "notify --log-schema": ["notify", "--log-schema"],
    "feedback --log-schema": ["feedback", str(uuid.UUID(int=1)), "--ack", "--log-schema"],
    "ingest postgres --schema": ["ingest", "postgres", "--until-caught-up", "--schema"],
    "dashboards up --marts-schema": ["dashboards", "up", "--marts-schema"],
    "dashboards status --marts-schema": ["dashboards", "status", "--marts-schema"],
}


@pytest.mark.parametrize("value", CRAFTED)
@pytest.mark.parametrize("command", FLAG_COMMANDS)
def test_a_crafted_schema_flag_is_refused_in_one_line_and_creates_nothing(
    command: str, value: str, nothing_created: None
) -> None:
    assert_refused(run_cli(*FLAG_COMMANDS[command], value), command.split()[-1])


ENV_COMMANDS = {
    "ANTENNA_ELT_RAW_SCHEMA": ["ingest", "postgres", "--until-caught-up"],
    "ANTENNA_ELT_DBT_SCHEMA": ["report"],
}


@pytest.mark.parametrize("value", CRAFTED)
@pytest.mark.parametrize("variable", ENV_COMMANDS)
def test_a_crafted_schema_variable_is_refused_in_one_line_and_creates_nothing(
    variable: str, value: str, nothing_created: None
) -> None:
    proc = run_cli(*ENV_COMMANDS[variable], env={**os.environ, variable: value})
    assert_refused(proc, variable)


def test_the_names_that_ran_their_own_sql_are_refused(nothing_created: None) -> None:
    report = run_cli("report", env={**os.environ, "ANTENNA_ELT_DBT_SCHEMA": EXPLOITS["report"]})
    assert_refused(report, "ANTENNA_ELT_DBT_SCHEMA")
    notify = run_cli("notify", "--marts-schema", EXPLOITS["notify"])
    assert_refused(notify, "--marts-schema")


# -- an older stack upgrades itself; a new one passes no password on a command line ------


@pytest.fixture
def private_home() -> Iterator[Settings]:
    """Settings of a PostgreSQL of the test's own (its own home and port); stopped after.
    The home is a short directory of /tmp: pytest's (with a worker's folder under xdist) can
    be too long for the server's socket path (local_pg.check_socket_path)."""
    home = Path(tempfile.mkdtemp(prefix="ae-stack-"))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PG", "KAFKA_"))}
    env.update(ANTENNA_ELT_HOME=str(home), ANTENNA_ELT_PG_PORT=str(free_port_pair()))
    settings = load_settings(env)
    try:
        yield settings
    finally:
        try:
            local_pg.stop_postgres(settings)
        finally:
            shutil.rmtree(home, ignore_errors=True)


@pytest.fixture
def recorded_commands() -> Iterator[Callable[[], list[str]]]:
    """The command lines of every process started so far in the test: those this process
    started, and every one /proc showed meanwhile."""
    with recorded_command_lines() as (started, seen):
        yield lambda: [*started, *sorted(seen)]


def server_user_command(*cmd: str) -> list[str]:
    if os.geteuid() != 0:
        return list(cmd)
    return ["runuser", "-u", local_pg.SYSTEM_USER, "--", *cmd]


def make_legacy_stack(settings: Settings, running: bool) -> None:
    """A cluster as versions before issue 13 made it: initdb's bootstrap superuser is the
    project role, trust for every local and loopback connection, the socket in
    .stack/postgres; a raw table with a row, an alert schema and Superset's reader role."""
    pdir = settings.home / "postgres"
    data = pdir / "data"
    data.mkdir(parents=True, mode=0o700)
    if os.geteuid() == 0:
        local_pg.ensure_system_user([pdir, data])
    bin_dir = pg_bin()
    subprocess.run(
        server_user_command(str(bin_dir / "initdb"), "-D", str(data), "-U", "antenna_elt",
                            "--auth=trust", "-E", "UTF8", "--locale=C"),
        check=True, capture_output=True,
    )  # fmt: skip
    options = (
        f"-p {settings.pg_port} -c listen_addresses=127.0.0.1 -c unix_socket_directories={pdir}"
    )
    log = pdir / "server.log"
    log.touch()
    if os.geteuid() == 0:
        local_pg.ensure_system_user([log])
    subprocess.run(
        server_user_command(str(bin_dir / "pg_ctl"), "-D", str(data), "-o", options, "-l",
                            str(log), "-w", "start"),
        check=True, capture_output=True,
    )  # fmt: skip
    base = f"host=127.0.0.1 port={settings.pg_port} user=antenna_elt"
    with psycopg.connect(f"{base} dbname=postgres", autocommit=True) as conn:
        conn.execute("create database antenna_elt")
        conn.execute("create database superset")
    with psycopg.connect(f"{base} dbname=antenna_elt", autocommit=True) as conn:
        conn.execute("create schema raw")
        conn.execute("create table raw.device_usage (id serial primary key, app text)")
        conn.execute("insert into raw.device_usage (app) values ('SKYPE')")
        conn.execute("create view raw.apps as select distinct app from raw.device_usage")
        conn.execute("create schema alerts")
        conn.execute("create table alerts.quota_breach_log (alert_id uuid primary key)")
    with psycopg.connect(f"{base} dbname=superset", autocommit=True) as conn:
        conn.execute("create table public.dashboards (id serial primary key)")
    if not running:
        subprocess.run(
            server_user_command(str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop"),
            check=True, capture_output=True,
        )  # fmt: skip


@pytest.mark.slow
@pytest.mark.parametrize("running", [True, False], ids=["running", "stopped"])
def test_a_stack_from_an_older_version_upgrades_itself_in_place(
    private_home: Settings, running: bool, recorded_commands: Callable[[], list[str]]
) -> None:
    settings = private_home
    make_legacy_stack(settings, running)
    line = local_pg.start_postgres(settings)
    assert "upgraded" in line, line

    rules = hba_rules(settings)
    assert rules and all(rule[-1] == "scram-sha-256" for rule in rules), rules
    with psycopg.connect(settings.pg_conninfo, autocommit=True) as conn:
        assert conn.execute("select app from raw.device_usage").fetchall() == [("SKYPE",)]
        assert conn.execute(
            "select rolsuper from pg_roles where rolname = current_user"
        ).fetchone() == (False,)
        owners = conn.execute(
            "select distinct pg_get_userbyid(relowner) from pg_class c join pg_namespace n "
            "on n.oid = c.relnamespace where nspname in ('raw', 'alerts')"
        ).fetchall()
        assert owners == [("antenna_elt",)]
        conn.execute("insert into raw.device_usage (app) values ('FACETIME')")  # its sequence too
        assert conn.execute(
            "select oid, rolname from pg_roles where rolsuper order by 1"
        ).fetchall() == [(10, SUPERUSER)]
    with psycopg.connect(f"{settings.pg_conninfo} dbname=superset") as conn:
        assert conn.execute("select count(*) from public.dashboards").fetchone() == (0,)
    assert "password authentication failed" in refusal(
        tcp_conninfo(settings, "antenna_elt", password="wrong")
    )
    sockets = list((settings.home / "postgres").rglob(".s.PGSQL.*[0-9]"))
    assert [s.parent for s in sockets] == [settings.home / "postgres" / "socket"]
    # a second start has nothing left to upgrade
    assert "upgraded" not in local_pg.start_postgres(settings)
    assert_no_password_on(recorded_commands(), settings)


@pytest.mark.slow
def test_a_new_stack_generates_its_passwords_and_passes_none_on_a_command_line(
    private_home: Settings, recorded_commands: Callable[[], list[str]]
) -> None:
    settings = private_home
    local_pg.start_postgres(settings)
    with psycopg.connect(settings.pg_conninfo) as conn:
        assert conn.execute("select current_user").fetchone() == ("antenna_elt",)
    assert "password authentication failed" in refusal(
        tcp_conninfo(settings, "antenna_elt", password="wrong")
    )
    assert [rule[-1] for rule in hba_rules(settings)] == ["scram-sha-256"] * 3
    assert_no_password_on(recorded_commands(), settings)
    assert any("initdb" in command for command in recorded_commands())


def assert_no_password_on(commands: list[str], settings: Settings) -> None:
    secrets = settings.home / "secrets"
    passwords = [
        (secrets / "superuser-password").read_text().strip(),
        (secrets / "pgpass").read_text().split(":")[-1].strip(),
    ]
    assert all(len(p) >= 20 for p in passwords)
    for command in commands:
        for password in passwords:
            assert password not in command, command


def test_the_psql_of_the_project_connects_with_the_stack_env(settings: Settings) -> None:
    """`eval "$(antenna-elt stack env)"` is all a shell needs for dbt and psql."""
    proc = run_cli("stack", "env")
    assert proc.returncode == 0, proc.stderr
    script = (
        f"{proc.stdout}\n"
        f"exec {pg_bin() / 'psql'} -w -h 127.0.0.1 "
        f"-p {settings.pg_env['PGPORT']} -U antenna_elt -d antenna_elt -Atc 'select current_user'"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    shell = subprocess.run(["bash", "-c", script], capture_output=True, text=True, env=env)
    assert shell.stdout.strip() == "antenna_elt", shell.stderr
    assert "PGPASSWORD" not in proc.stdout  # no secret in the shell's environment
