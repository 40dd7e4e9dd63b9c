"""antenna-elt speed DAG (Airflow, cosmos): every 5 minutes, the source freshness check,
the PostgreSQL marts (one `dbt build` with the data tests on what it touched: a task per
model would start dbt once a model, ~290 s a run on 2 cores, too close to the interval),
then the quota alerts. One run at a time, no catch-up: a late run only has more to fold
in. The hourly DAG renders a task per model, where the lineage shows."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from airflow.providers.standard.operators.bash import BashOperator
from airflow.sdk import DAG
from antenna_elt_common import (
    ANTENNA_ELT,
    DBT,
    DEFAULT_ARGS,
    PROFILES_DIR,
    PROJECT_DIR,
    RAW_SCHEMA,
    alert_on_failure,
    dbt_build_task,
)

with DAG(
    dag_id="antenna_elt_speed",
    description="freshness, incremental PostgreSQL marts, quota alerts",
    schedule=timedelta(minutes=5),
    start_date=datetime(2026, 1, 1, tzinfo=UTC),
    catchup=False,
    max_active_runs=1,
    dagrun_timeout=timedelta(minutes=15),
    default_args={**DEFAULT_ARGS, "on_failure_callback": alert_on_failure},
    tags=["antenna-elt", "speed"],
) as dag:
    # a stale source is an alert, not a reason to stop building what did arrive
    freshness = BashOperator(
        task_id="source_freshness",
        bash_command=(
            f"{DBT} source freshness --target postgres --select source:raw.device_usage "
            f"--vars '{{raw_schema: {RAW_SCHEMA}}}'"
        ),
        cwd=str(PROJECT_DIR),
        env={"DBT_PROFILES_DIR": str(PROFILES_DIR)},
        append_env=True,
        retries=0,
        execution_timeout=timedelta(minutes=3),
    )
    marts = dbt_build_task("speed_marts", "postgres", test_scope="touched")
    notify = BashOperator(
        task_id="notify",
        bash_command=f"{ANTENNA_ELT} notify",
        execution_timeout=timedelta(minutes=3),
    )
    marts >> notify
