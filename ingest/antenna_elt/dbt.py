"""Run the dbt project from Python (tests, demo, benchmarks) and read its marts."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from antenna_elt.errors import UserError
from antenna_elt.settings import PROJECT_ROOT, load_settings, process_environment


def profiles_dir() -> Path:
    """DBT_PROFILES_DIR, or .stack/dbt with the profile copied from profiles.yml.example."""
    configured = load_settings().dbt_profiles_dir
    if configured:
        return configured
    directory = PROJECT_ROOT / ".stack" / "dbt"
    directory.mkdir(parents=True, exist_ok=True)
    example = PROJECT_ROOT / "profiles.yml.example"
    target = directory / "profiles.yml"
    if not target.exists() or target.read_bytes() != example.read_bytes():
        shutil.copyfile(example, target)
    return directory


def run_dbt(
    args: list[str], env: dict[str, str] | None = None, check: bool = True
) -> subprocess.CompletedProcess[str]:
    """`dbt ARGS` in the project directory; raise with dbt's output when it fails."""
    dbt = Path(sys.executable).with_name("dbt")
    full_env = {
        **process_environment(),
        **load_settings().pg_child_env,  # the local PostgreSQL's password file for libpq
        "DBT_PROFILES_DIR": str(profiles_dir()),
        **(env or {}),
    }
    proc = subprocess.run(
        [str(dbt), *args], cwd=PROJECT_ROOT, env=full_env, capture_output=True, text=True
    )
    if check and proc.returncode != 0:
        raise UserError(f"dbt {' '.join(args)} failed:\n{proc.stdout[-4000:]}{proc.stderr[-2000:]}")
    return proc


def query_postgres(conninfo: str, sql: str) -> list[tuple[Any, ...]]:
    import psycopg

    with psycopg.connect(conninfo) as conn:
        return [tuple(row) for row in conn.execute(sql).fetchall()]


def query_duckdb(path: str | Path, sql: str) -> list[tuple[Any, ...]]:
    import duckdb

    with duckdb.connect(str(path), read_only=True) as conn:
        return [tuple(row) for row in conn.execute(sql).fetchall()]
