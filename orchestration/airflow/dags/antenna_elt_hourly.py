"""antenna-elt hourly DAG (Airflow, cosmos): waits until the lake ingestor has closed the
hour (its manifest), loads it into BigQuery when that is the warehouse, then builds the
warehouse's marts (each model with its data tests). One task at a time: DuckDB has one
writer."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from airflow.providers.standard.operators.bash import BashOperator
from airflow.providers.standard.sensors.bash import BashSensor
from airflow.sdk import DAG
from antenna_elt_common import (
    ANTENNA_ELT,
    DEFAULT_ARGS,
    WAREHOUSE,
    alert_on_failure,
    dbt_task_group,
)

# the hour that ended when the run was due: a run at 11:00 waits for and builds 10:00-11:00
HOUR = "{{ (logical_date - macros.timedelta(hours=1)).strftime('%Y-%m-%dT%H') }}"

with DAG(
    dag_id="antenna_elt_hourly",
    description="closed lake hour -> (BigQuery load) -> warehouse marts",
    schedule="@hourly",
    start_date=datetime(2026, 1, 1, tzinfo=UTC),
    catchup=False,
    max_active_runs=1,
    max_active_tasks=1,
    dagrun_timeout=timedelta(hours=4),
    default_args={**DEFAULT_ARGS, "on_failure_callback": alert_on_failure},
    tags=["antenna-elt", "batch"],
) as dag:
    closed = BashSensor(
        task_id="wait_for_closed_hour",
        bash_command=f"{ANTENNA_ELT} lake closed --hour {HOUR}",
        mode="reschedule",
        poke_interval=60,
        timeout=3 * 3600,
        retries=0,
    )
    marts = dbt_task_group("warehouse_marts", WAREHOUSE, test_scope="touched")
    if WAREHOUSE == "bigquery":
        load = BashOperator(
            task_id="load_bigquery",
            bash_command=f"{ANTENNA_ELT} load bigquery --hour {HOUR}",
            execution_timeout=timedelta(minutes=30),
        )
        closed >> load >> marts
    else:
        closed >> marts
