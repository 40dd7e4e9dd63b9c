"""The local stack: a single-node KRaft Kafka broker and a PostgreSQL server.

Both are real servers started by the project itself, on 127.0.0.1, with every file under
``settings.home`` (``.stack/`` by default):

- Kafka: the official ``org.apache.kafka:kafka_2.13`` jars from Maven Central, resolved by
  Maven from ``stack_files/kafka-pom.xml`` into ``<home>/kafka/lib`` (only when missing or
  when the pom changed), storage formatted once, the broker started detached.
- PostgreSQL: the server binaries shipped by the ``pgserver`` wheel (PostgreSQL 16), a
  cluster initialised once in ``<home>/postgres/data``, driven with ``pg_ctl``. PostgreSQL
  refuses to run as root, so as root it runs as a system user ``antenna-elt``.

``up`` is idempotent and returns only when both answer. When ``KAFKA_BOOTSTRAP_SERVERS`` or
``PGHOST``/``PGPORT`` point elsewhere, that component is left to the user and only checked.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import pwd
import shutil
import signal
import subprocess
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from antenna_elt.config import DEFAULT_PG_DATABASE, DEFAULT_PG_USER, PROJECT_ROOT, Settings
from antenna_elt.errors import UserError
from antenna_elt.processes import pid_alive, port_open, read_pid, stop_pid, tail

FILES = Path(__file__).resolve().parent / "stack_files"
KAFKA_START_TIMEOUT = 90.0
PG_START_TIMEOUT = 60.0
SYSTEM_USER = "antenna-elt"
TOPIC_PARTITIONS = 3


@dataclass(frozen=True)
class ComponentStatus:
    name: str
    state: str  # running | stopped | external | unreachable
    detail: str

    def line(self) -> str:
        return (
            f"{self.name}: {self.state} ({self.detail})"
            if self.detail
            else f"{self.name}: {self.state}"
        )


# -- small helpers ---------------------------------------------------------------------


def _require(tool: str, package: str) -> str:
    found = shutil.which(tool)
    if not found:
        raise UserError(
            f"`{tool}` not found on PATH: install it with `apt-get install -y {package}`"
        )
    return found


# -- Kafka -----------------------------------------------------------------------------


def _kafka_dir(settings: Settings) -> Path:
    return settings.home / "kafka"


def _kafka_pidfile(settings: Settings) -> Path:
    return _kafka_dir(settings) / "broker.pid"


def _kafka_jars(settings: Settings) -> Path:
    """Resolve the broker's jars with Maven, once per pom version. The jars are a cache
    shared by every stack of this checkout (tests start private stacks)."""
    pom = FILES / "kafka-pom.xml"
    digest = hashlib.sha256(pom.read_bytes()).hexdigest()[:16]
    lib = PROJECT_ROOT / ".stack" / "cache" / f"kafka-lib-{digest}"
    stamp = lib / ".resolved"
    if stamp.exists():
        return lib
    _require("java", "openjdk-17-jre-headless")
    mvn = _require("mvn", "maven")
    if lib.exists():
        shutil.rmtree(lib)
    lib.mkdir(parents=True)
    print("kafka: resolving the broker's jars from Maven Central (once)...", flush=True)
    proc = subprocess.run(
        [
            mvn,
            "-q",
            "-B",
            "-f",
            str(pom),
            "dependency:copy-dependencies",
            f"-DoutputDirectory={lib}",
            "-DincludeScope=runtime",
        ],
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0:
        raise UserError(
            "Maven could not resolve the Kafka jars (is Maven Central reachable?): "
            + (proc.stdout + proc.stderr).strip().splitlines()[-1:][0]
            if (proc.stdout + proc.stderr).strip()
            else "Maven could not resolve the Kafka jars"
        )
    stamp.touch()
    return lib


def _kafka_config(settings: Settings) -> Path:
    kdir = _kafka_dir(settings)
    template = (FILES / "server.properties").read_text()
    text = template.format(
        port=settings.kafka_port,
        controller_port=settings.kafka_port + 1,
        data_dir=kdir / "data",
        partitions=TOPIC_PARTITIONS,
    )
    path = kdir / "server.properties"
    if not path.exists() or path.read_text() != text:
        path.write_text(text)
    return path


def _java_cmd(lib: Path, *args: str, heap: str = "256m") -> list[str]:
    java = _require("java", "openjdk-17-jre-headless")
    return [
        java,
        f"-Xmx{heap}",
        f"-Dlog4j2.configurationFile={FILES / 'log4j2.properties'}",
        "-cp",
        f"{lib}/*",
        *args,
    ]


def _format_kafka_storage(settings: Settings, lib: Path, config: Path) -> None:
    data = _kafka_dir(settings) / "data"
    if (data / "meta.properties").exists():
        return
    cluster_file = _kafka_dir(settings) / "cluster.id"
    if not cluster_file.exists():
        out = subprocess.run(
            _java_cmd(lib, "kafka.tools.StorageTool", "random-uuid"),
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        cluster_file.write_text(out.strip().splitlines()[-1])
    proc = subprocess.run(
        _java_cmd(
            lib,
            "kafka.tools.StorageTool",
            "format",
            "--standalone",
            "-t",
            cluster_file.read_text().strip(),
            "-c",
            str(config),
            "--ignore-formatted",
        ),
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0:
        raise UserError(
            f"formatting Kafka storage failed: {(proc.stdout + proc.stderr).strip()[-500:]}"
        )


def kafka_pid(settings: Settings) -> int | None:
    pid = read_pid(_kafka_pidfile(settings))
    return pid if pid is not None and pid_alive(pid) else None


def _kafka_answers(bootstrap: str, timeout: float = 5.0) -> bool:
    from kafka import KafkaConsumer

    try:
        consumer = KafkaConsumer(
            bootstrap_servers=bootstrap.split(","),
            request_timeout_ms=int(timeout * 1000) + 1000,
            enable_auto_commit=False,
        )
    except Exception:
        return False
    try:
        consumer.topics()
        return True
    except Exception:
        return False
    finally:
        consumer.close()


def start_kafka(settings: Settings) -> str:
    """Start the local broker (or check the external one); return a status line."""
    if settings.kafka_external:
        if not _kafka_answers(settings.kafka_bootstrap_servers):
            raise UserError(
                f"Kafka at {settings.kafka_bootstrap_servers} (KAFKA_BOOTSTRAP_SERVERS) does not "
                "answer; start it or unset KAFKA_BOOTSTRAP_SERVERS to use the local broker"
            )
        return f"kafka: external at {settings.kafka_bootstrap_servers} (KAFKA_BOOTSTRAP_SERVERS)"
    pid = kafka_pid(settings)
    if pid is not None:
        _wait_kafka(settings, pid)
        return f"kafka: already running (pid {pid}, {settings.kafka_bootstrap_servers})"
    if port_open(settings.kafka_port):
        raise UserError(
            f"port {settings.kafka_port} is taken by another program: stop it, or set "
            "ANTENNA_ELT_KAFKA_PORT to a free port, or KAFKA_BOOTSTRAP_SERVERS to use that broker"
        )
    kdir = _kafka_dir(settings)
    kdir.mkdir(parents=True, exist_ok=True)
    lib = _kafka_jars(settings)
    config = _kafka_config(settings)
    _format_kafka_storage(settings, lib, config)
    log = kdir / "broker.log"
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            _java_cmd(lib, "kafka.Kafka", str(config), heap="512m"),
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            cwd=kdir,
        )
    _kafka_pidfile(settings).write_text(str(proc.pid))
    _wait_kafka(settings, proc.pid)
    return f"kafka: started (pid {proc.pid}, {settings.kafka_bootstrap_servers}, log {log})"


def _wait_kafka(settings: Settings, pid: int) -> None:
    deadline = time.monotonic() + KAFKA_START_TIMEOUT
    log = _kafka_dir(settings) / "broker.log"
    while time.monotonic() < deadline:
        if not pid_alive(pid):
            raise UserError(
                f"the Kafka broker exited while starting; last lines of {log}:\n{tail(log)}"
            )
        if port_open(settings.kafka_port) and _kafka_answers(settings.kafka_bootstrap_servers):
            return
        time.sleep(0.5)
    raise UserError(
        f"the Kafka broker did not answer within {KAFKA_START_TIMEOUT:.0f} s; last lines of {log}:\n{tail(log)}"
    )


def ensure_topic(settings: Settings, topic: str, partitions: int = TOPIC_PARTITIONS) -> bool:
    """Create ``topic`` if missing; True when it was created."""
    from kafka.admin import KafkaAdminClient, NewTopic
    from kafka.errors import TopicAlreadyExistsError

    admin = KafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap_servers.split(","))
    try:
        if topic in admin.list_topics():
            return False
        try:
            admin.create_topics([NewTopic(topic, partitions, 1)])
        except TopicAlreadyExistsError:
            return False
        return True
    finally:
        admin.close()


def stop_kafka(settings: Settings) -> str:
    if settings.kafka_external:
        return "kafka: external, left alone"
    pid = kafka_pid(settings)
    if pid is None:
        return "kafka: not running"
    stop_pid(pid, 30.0)
    _kafka_pidfile(settings).unlink(missing_ok=True)
    return f"kafka: stopped (pid {pid})"


def kill_kafka(settings: Settings) -> None:
    """SIGKILL the local broker (crash tests)."""
    pid = kafka_pid(settings)
    if pid is not None:
        stop_pid(pid, 0.0, signal.SIGKILL)


# -- PostgreSQL -------------------------------------------------------------------------


def _pg_dir(settings: Settings) -> Path:
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
    data = _pg_dir(settings) / "data"
    cmd = _as_server_user([str(_pg_bin() / "pg_ctl"), "-D", str(data), *args])
    return subprocess.run(cmd, capture_output=True, text=True, check=check)


def postgres_pid(settings: Settings) -> int | None:
    pid = read_pid(_pg_dir(settings) / "data" / "postmaster.pid")
    return pid if pid is not None and pid_alive(pid) else None


def _pg_connect(settings: Settings, dbname: str | None = None, timeout: int = 3) -> Any:
    import psycopg

    conninfo = settings.pg_conninfo
    if dbname:
        conninfo += f" dbname={dbname}"
    return psycopg.connect(conninfo, connect_timeout=timeout, autocommit=True)


def _pg_answers(settings: Settings, dbname: str | None = None) -> bool:
    try:
        with _pg_connect(settings, dbname) as conn:
            conn.execute("select 1")
        return True
    except Exception:
        return False


def _init_postgres(settings: Settings) -> None:
    pdir = _pg_dir(settings)
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
    socket_dir = _pg_dir(settings)
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
        if not _pg_answers(settings):
            raise UserError(
                f"PostgreSQL at {settings.pg_conninfo} (PGHOST/PGPORT) does not answer; start it "
                "or unset PGHOST and PGPORT to use the local server"
            )
        return f"postgres: external at {settings.pg_conninfo} (PGHOST/PGPORT)"
    pid = postgres_pid(settings)
    if pid is not None and _pg_answers(settings, "postgres"):
        _ensure_database(settings)
        return f"postgres: already running (pid {pid}, 127.0.0.1:{settings.pg_port})"
    if pid is None and port_open(settings.pg_port):
        raise UserError(
            f"port {settings.pg_port} is taken by another program: stop it, or set "
            "ANTENNA_ELT_PG_PORT to a free port, or PGHOST/PGPORT to use that server"
        )
    _init_postgres(settings)
    log = _pg_dir(settings) / "server.log"
    if os.geteuid() == 0:
        _ensure_system_user([_pg_dir(settings)])
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
        str(int(PG_START_TIMEOUT)),
        "start",
        check=False,
    )
    if proc.returncode != 0:
        raise UserError(f"PostgreSQL did not start; last lines of {log}:\n{tail(log)}")
    deadline = time.monotonic() + PG_START_TIMEOUT
    while not _pg_answers(settings, "postgres"):
        if time.monotonic() > deadline:
            raise UserError(f"PostgreSQL does not answer; last lines of {log}:\n{tail(log)}")
        time.sleep(0.3)
    _ensure_database(settings)
    return (
        f"postgres: started (pid {postgres_pid(settings)}, 127.0.0.1:{settings.pg_port}, log {log})"
    )


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
    pid = postgres_pid(settings)
    if pid is None:
        return "postgres: not running"
    _pg_ctl(settings, "-m", "fast", "-w", "-t", "60", "stop", check=False)
    if pid_alive(pid):
        stop_pid(pid, 10.0, signal.SIGQUIT)
    return f"postgres: stopped (pid {pid})"


# -- the stack -------------------------------------------------------------------------


def check_prerequisites(settings: Settings) -> None:
    """Fail before starting anything when a tool the local broker needs is missing."""
    if settings.kafka_external:
        return
    _require("java", "openjdk-17-jre-headless")
    pom = FILES / "kafka-pom.xml"
    digest = hashlib.sha256(pom.read_bytes()).hexdigest()[:16]
    if not (PROJECT_ROOT / ".stack" / "cache" / f"kafka-lib-{digest}" / ".resolved").exists():
        _require("mvn", "maven")


def ensure_up(settings: Settings) -> list[str]:
    """Start (or check) Kafka and PostgreSQL and the events topic; return status lines."""
    check_prerequisites(settings)
    lines = [start_postgres(settings), start_kafka(settings)]
    if ensure_topic(settings, settings.topic):
        lines.append(f"kafka: created topic {settings.topic} ({TOPIC_PARTITIONS} partitions)")
    return lines


def status(settings: Settings) -> list[ComponentStatus]:
    result = []
    if settings.kafka_external:
        state = (
            "external" if _kafka_answers(settings.kafka_bootstrap_servers, 3.0) else "unreachable"
        )
        result.append(ComponentStatus("kafka", state, settings.kafka_bootstrap_servers))
    else:
        pid = kafka_pid(settings)
        if pid is None:
            result.append(ComponentStatus("kafka", "stopped", ""))
        else:
            detail = f"pid {pid}, {settings.kafka_bootstrap_servers}, data {_kafka_dir(settings) / 'data'}"
            result.append(ComponentStatus("kafka", "running", detail))
    if settings.pg_external:
        state = "external" if _pg_answers(settings) else "unreachable"
        result.append(ComponentStatus("postgres", state, settings.pg_conninfo))
    else:
        pid = postgres_pid(settings)
        if pid is None:
            result.append(ComponentStatus("postgres", "stopped", ""))
        else:
            detail = f"pid {pid}, 127.0.0.1:{settings.pg_port}, data {_pg_dir(settings) / 'data'}"
            result.append(ComponentStatus("postgres", "running", detail))
    return result


# -- CLI -------------------------------------------------------------------------------


def _run_up(args: argparse.Namespace, settings: Settings) -> int:
    started = time.monotonic()
    for line in ensure_up(settings):
        print(line, flush=True)
    print(f"stack up in {time.monotonic() - started:.1f} s")
    return 0


def _run_down(args: argparse.Namespace, settings: Settings) -> int:
    print(stop_kafka(settings))
    print(stop_postgres(settings))
    return 0


def _run_status(args: argparse.Namespace, settings: Settings) -> int:
    components = status(settings)
    for component in components:
        print(component.line())
    return 0 if all(c.state in ("running", "external") for c in components) else 1


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "stack",
        help="start, stop or show the local Kafka broker and PostgreSQL server",
        description=(
            "The local stack: a single-node KRaft Kafka broker (jars from Maven Central) and a "
            "PostgreSQL 16 server, on 127.0.0.1, data under ANTENNA_ELT_HOME (.stack/). "
            "KAFKA_BOOTSTRAP_SERVERS or PGHOST/PGPORT point at servers of your own instead."
        ),
    )
    sub = parser.add_subparsers(dest="action", metavar="ACTION")
    sub.required = True
    up = sub.add_parser(
        "up",
        help="start what is not running and wait until it answers (a no-op when all run)",
        description="Start Kafka and PostgreSQL if needed, create the events topic, wait for both.",
    )
    up.set_defaults(func=_run_up)
    down = sub.add_parser(
        "down",
        help="stop the Kafka and PostgreSQL that `up` started (data is kept)",
        description="Stop only what this stack started; external servers are left alone.",
    )
    down.set_defaults(func=_run_down)
    st = sub.add_parser(
        "status",
        help="one line per component; exit 1 if one is stopped or unreachable",
        description="Show whether Kafka and PostgreSQL run, with pid, address and data directory.",
    )
    st.set_defaults(func=_run_status)
