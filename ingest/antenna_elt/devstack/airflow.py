"""Apache Airflow for the project's DAGs (orchestration/airflow/dags), on this machine:
``antenna-elt airflow up|down|status`` (``make airflow``).

Airflow 3.3 and astronomer-cosmos live in a virtualenv of their own (.stack/airflow/venv);
dbt stays in the project's environment and cosmos calls it as a subprocess. The metadata
database is ``airflow`` on the project's PostgreSQL. The parts run as separate processes in
one process group: the API server and UI on 127.0.0.1 (ANTENNA_ELT_AIRFLOW_PORT, 8090), the
scheduler (LocalExecutor, parallelism capped for 2 cores), the DAG processor and the
triggerer, the last two without their log servers (which would listen on every interface):
the API server reads the task logs from the local files. The admin password, the JWT secret
and the Fernet-less API secret are generated once under .stack/airflow (mode 600).
"""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from antenna_elt.devstack import venvs
from antenna_elt.devstack.secrets import read_or_create_secret, write_private
from antenna_elt.devstack.service import Service
from antenna_elt.errors import UserError
from antenna_elt.settings import PROJECT_ROOT, Settings, process_environment

# shared/KNOWN.md: these resolve cleanly without Airflow's constraints file; dbt is kept out
REQUIREMENTS = ("apache-airflow==3.3.2", "astronomer-cosmos==1.15.1", "psycopg2-binary")
DAGS_FOLDER = PROJECT_ROOT / "orchestration" / "airflow" / "dags"
METADATA_DB = "airflow"
ADMIN_USER = "admin"
DBT_TARGETS = ("postgres", "duckdb")
START_TIMEOUT = 180.0


def say(message: str) -> None:
    print(f"airflow: {message}", flush=True)


@dataclass(frozen=True)
class Instance:
    root: Path
    """.stack/airflow: the venv, AIRFLOW_HOME, secrets, logs."""
    port: int
    metadata_uri: str
    """SQLAlchemy URL of the metadata database (no password in it: libpq finds it)."""
    venv: Path
    """Airflow's own virtualenv (one per machine: tests share the user's)."""

    @property
    def home(self) -> Path:
        return self.root / "home"

    @property
    def manifests(self) -> Path:
        return self.root / "manifests"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def password_file(self) -> Path:
        return self.root / "admin-password.json"

    def bin(self, name: str) -> Path:
        return self.venv / "bin" / name

    def service(self) -> Service:
        return Service(
            name="Airflow",
            port=self.port,
            pidfile=self.root / "airflow.pid",
            logfile=self.root / "airflow.log",
            answers=lambda: health(self.url),
            start_timeout=START_TIMEOUT,
            port_taken_hint="set ANTENNA_ELT_AIRFLOW_PORT to a free port",
            answer_target=f" at {self.url}/api/v2/monitor/health",
            stop_group=True,
        )


def default_instance(settings: Settings) -> Instance:
    pg = settings.pg_env
    uri = f"postgresql+psycopg2://{pg['PGUSER']}@{pg['PGHOST']}:{pg['PGPORT']}/{METADATA_DB}"
    root = settings.home / "airflow"
    return Instance(root, settings.airflow_port, uri, root / "venv")


def health(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/api/v2/monitor/health", timeout=3) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def environment(settings: Settings, instance: Instance) -> dict[str, str]:
    """What every Airflow process (and the dbt and antenna-elt commands its tasks run) sees."""
    env = {**process_environment(), **settings.pg_child_env}  # libpq's password file
    jwt = read_or_create_secret(instance.root / "jwt-secret", 32)
    api_secret = read_or_create_secret(instance.root / "api-secret-key", 32)
    env.update(
        {
            "AIRFLOW_HOME": str(instance.home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(DAGS_FOLDER),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
            # 2 cores: a few tasks at a time, not 32 worker processes
            "AIRFLOW__CORE__PARALLELISM": "4",
            "AIRFLOW__CORE__DAGBAG_IMPORT_TIMEOUT": "120",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{ADMIN_USER}:admin",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(instance.password_file),
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{instance.url}/execution/",
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": instance.metadata_uri,
            "AIRFLOW__API__HOST": "127.0.0.1",
            "AIRFLOW__API__PORT": str(instance.port),
            "AIRFLOW__API__BASE_URL": instance.url,
            "AIRFLOW__API__SECRET_KEY": api_secret,
            "AIRFLOW__API_AUTH__JWT_SECRET": jwt,
            "AIRFLOW__LOGGING__BASE_LOG_FOLDER": str(instance.home / "logs"),
            # the DAGs' settings (orchestration/airflow/dags/antenna_elt_common.py)
            "ANTENNA_ELT_PROJECT_DIR": str(PROJECT_ROOT),
            "ANTENNA_ELT_BIN": str(Path(sys.executable).parent),
            "ANTENNA_ELT_AIRFLOW_MANIFESTS": str(instance.manifests),
            "DBT_PROFILES_DIR": str(_profiles_dir()),
            "PATH": f"{instance.venv / 'bin'}:{env.get('PATH', '')}",
        }
    )
    return env


def _profiles_dir() -> Path:
    from antenna_elt.dbt import profiles_dir

    return profiles_dir()


def admin_password(instance: Instance) -> str:
    """Generated once; the simple auth manager reads it from its passwords file."""
    password = read_or_create_secret(instance.root / "admin-password", 18)
    write_private(instance.password_file, json.dumps({ADMIN_USER: password}))
    return password


def write_manifests(instance: Instance) -> None:
    """dbt's manifest of each target, which cosmos renders the task groups from (DAG
    parsing then never runs dbt)."""
    from antenna_elt.dbt import run_dbt

    for target in DBT_TARGETS:
        run_dbt(
            [
                "parse",
                "--target",
                target,
                "--target-path",
                str(instance.manifests / target),
                "--quiet",
            ]
        )


def airflow(settings: Settings, instance: Instance, *args: str, timeout: float = 600) -> str:
    """``airflow ARGS`` with the instance's environment; its output (raises on failure)."""
    proc = subprocess.run(
        [str(instance.bin("airflow")), *args],
        env=environment(settings, instance),
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=PROJECT_ROOT,
    )
    if proc.returncode != 0:
        raise UserError(
            f"`airflow {' '.join(args)}` failed: {venvs.last_line(proc.stdout + proc.stderr)} "
            f"(full output above; AIRFLOW_HOME={instance.home})\n{(proc.stdout + proc.stderr)[-3000:]}"
        )
    return proc.stdout


def prepare(settings: Settings, instance: Instance, *, database: bool = True) -> None:
    """Install, write the manifests and the secrets, migrate the metadata database."""
    venvs.ensure_installed(
        instance.venv, REQUIREMENTS, tool="Apache Airflow and astronomer-cosmos",
        command="airflow", size="about 330 MB, 1-3 minutes", say=say,
    )  # fmt: skip
    instance.home.mkdir(parents=True, exist_ok=True)
    if database:
        from antenna_elt.devstack.superset_db import ensure_metadata_database

        if ensure_metadata_database(settings, METADATA_DB):
            say(f"created the metadata database {METADATA_DB!r}")
    write_manifests(instance)
    admin_password(instance)
    airflow(settings, instance, "db", "migrate")


def _launch(settings: Settings, instance: Instance) -> int:
    """The four parts in one process group (the pid file names the group's leader)."""
    parts = [
        f"{instance.bin('airflow')} api-server --host 127.0.0.1 --port {instance.port}",
        f"{instance.bin('airflow')} scheduler --skip-serve-logs",
        f"{instance.bin('airflow')} dag-processor",
        f"{instance.bin('airflow')} triggerer --skip-serve-logs",
    ]
    script = " & ".join(parts) + " & wait"
    return instance.service().spawn(
        ["/bin/sh", "-c", script], cwd=PROJECT_ROOT, env=environment(settings, instance)
    )


def up(settings: Settings, instance: Instance) -> tuple[int, bool, str]:
    """Start Airflow unless it runs; returns (pid, started now, admin password)."""
    prepare(settings, instance)
    pid, started = instance.service().start(lambda: _launch(settings, instance))
    return pid, started, admin_password(instance)


def down(instance: Instance) -> int | None:
    return instance.service().stop()


def status(instance: Instance) -> int | None:
    return instance.service().running_pid()
