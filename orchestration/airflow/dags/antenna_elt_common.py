"""Settings shared by the antenna-elt Airflow DAGs (speed and hourly), read from the
environment of the Airflow workers (set by `make airflow`, or by your Cloud Composer
environment's variables):

- ANTENNA_ELT_PROJECT_DIR: the antenna-elt checkout (dbt project); default: three folders
  up from this file.
- ANTENNA_ELT_BIN: the folder with the project's `dbt` and `antenna-elt` (its virtualenv's
  bin); default: <project>/.venv/bin. dbt runs from there, never inside Airflow's own
  environment (cosmos: dbt_executable_path, subprocess invocation).
- DBT_PROFILES_DIR: the dbt profile's folder; default: <project>/.stack/dbt.
- ANTENNA_ELT_AIRFLOW_MANIFESTS: the dbt manifests cosmos renders the task groups from, one
  folder per target (<dir>/postgres/manifest.json ...); default: <project>/.stack/airflow/
  manifests. `make airflow` writes them with `dbt parse`; in a deployment, ship them with
  the DAGs (see the README).
- ANTENNA_ELT_WAREHOUSE: the hourly DAG's target, duckdb (default) or bigquery (then it
  loads each closed hour into BigQuery first).
Everything else (PG*, KAFKA_BOOTSTRAP_SERVERS, ANTENNA_ELT_LAKE, ...) is the project's
usual settings, passed through to the commands.
"""

from __future__ import annotations

import logging
import os
from datetime import timedelta
from pathlib import Path
from typing import Any

PROJECT_DIR = Path(os.environ.get("ANTENNA_ELT_PROJECT_DIR") or Path(__file__).resolve().parents[3])
BIN = Path(os.environ.get("ANTENNA_ELT_BIN") or PROJECT_DIR / ".venv" / "bin")
DBT = BIN / "dbt"
ANTENNA_ELT = BIN / "antenna-elt"
PROFILES_DIR = Path(os.environ.get("DBT_PROFILES_DIR") or PROJECT_DIR / ".stack" / "dbt")
MANIFESTS = Path(
    os.environ.get("ANTENNA_ELT_AIRFLOW_MANIFESTS")
    or PROJECT_DIR / ".stack" / "airflow" / "manifests"
)
WAREHOUSE = os.environ.get("ANTENNA_ELT_WAREHOUSE") or "duckdb"
RAW_SCHEMA = os.environ.get("ANTENNA_ELT_RAW_SCHEMA") or "raw"

DEFAULT_ARGS: dict[str, Any] = {
    "owner": "antenna-elt",
    "retries": 2,
    "retry_delay": timedelta(seconds=30),
    "execution_timeout": timedelta(minutes=10),
}

log = logging.getLogger("antenna_elt.airflow")


def _profile(target: str) -> Any:
    from cosmos import ProfileConfig

    return ProfileConfig(
        profile_name="antenna_elt",
        target_name=target,
        profiles_yml_filepath=PROFILES_DIR / "profiles.yml",
    )


def dbt_build_task(task_id: str, target: str, test_scope: str, **kwargs: Any) -> Any:
    """One cosmos task that builds the whole project on one target with its data tests
    (`dbt build`, unit tests left to CI), as `antenna-elt run`'s speed cycle does: dbt
    starts and loads the project once a run, not once a model (README, Airflow)."""
    from cosmos.constants import InvocationMode
    from cosmos.operators.local import DbtBuildLocalOperator

    return DbtBuildLocalOperator(
        task_id=task_id,
        project_dir=str(PROJECT_DIR),
        profile_config=_profile(target),
        dbt_executable_path=str(DBT),
        invocation_mode=InvocationMode.SUBPROCESS,
        exclude="resource_type:unit_test",
        vars={"raw_schema": RAW_SCHEMA, "ingest_test_scope": test_scope},
        install_deps=False,
        emit_datasets=False,
        **kwargs,
    )


def dbt_task_group(group_id: str, target: str, test_scope: str, **kwargs: Any) -> Any:
    """The dbt project as a cosmos task group on one target: a task per model that runs
    it with its tests (`dbt build -s <model>`), in lineage order."""
    from cosmos import DbtTaskGroup, ExecutionConfig, ProjectConfig, RenderConfig
    from cosmos.constants import InvocationMode, LoadMode, TestBehavior, TestIndirectSelection

    manifest = MANIFESTS / target / "manifest.json"
    if not manifest.exists():
        raise FileNotFoundError(
            f"{manifest} is missing: run `make airflow` (it writes the manifests with "
            f"`dbt parse --target {target}`) or ship the manifest with the DAGs"
        )
    return DbtTaskGroup(
        group_id=group_id,
        project_config=ProjectConfig(PROJECT_DIR, manifest_path=manifest),
        profile_config=_profile(target),
        execution_config=ExecutionConfig(
            dbt_executable_path=str(DBT),
            invocation_mode=InvocationMode.SUBPROCESS,
            # singular tests with several parents run once every parent is built
            test_indirect_selection=TestIndirectSelection.CAUTIOUS,
        ),
        render_config=RenderConfig(
            load_method=LoadMode.DBT_MANIFEST,
            dbt_executable_path=str(DBT),
            invocation_mode=InvocationMode.SUBPROCESS,
            test_behavior=TestBehavior.BUILD,
            should_detach_multiple_parents_tests=True,
            emit_datasets=False,
        ),
        operator_args={
            "vars": {"raw_schema": RAW_SCHEMA, "ingest_test_scope": test_scope},
            "install_deps": False,
        },
        default_args=DEFAULT_ARGS,
        **kwargs,
    )


def alert_on_failure(context: dict[str, Any]) -> None:
    """A task failed for good: say so loudly in the task log (the hook for a pager)."""
    task = context.get("task_instance")
    log.error(
        "ANTENNA-ELT ALERT: %s failed in %s (run %s): %s",
        getattr(task, "task_id", "?"),
        getattr(task, "dag_id", "?"),
        context.get("run_id"),
        context.get("exception"),
    )
