"""A small built warehouse for the checks that compare the dbt project with what it builds
(the LookML generator's fields, the conventions' catalog check): a few hours of events
written straight into a Parquet lake in the lake ingestor's own schema, `dbt build` and
`dbt docs generate` on the embedded DuckDB target. No server is needed."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from antenna_elt.dbt import query_duckdb, run_dbt
from antenna_elt.sinks.lake.parquet import event_schema

START = datetime(2026, 11, 24, 8, tzinfo=UTC)
ANTENNAS = ("a1000000-0000-4000-8000-000000000001", "a2000000-0000-4000-8000-000000000002")
ANDRES = "00000000-0000-0000-0000-000000000001"  # quota 200000
FEDE = "00000000-0000-0000-0000-000000000004"  # quota 5000: over it every hour below
STRANGER = "ffffffff-0000-4000-8000-00000000000f"  # missing from user metadata


@dataclass(frozen=True)
class Warehouse:
    path: Path
    """the DuckDB file"""
    schema: str
    """ANTENNA_ELT_DBT_SCHEMA: the marts are in <schema>_marts"""
    artifacts: Path
    """manifest.json and catalog.json of the build"""

    @property
    def marts_schema(self) -> str:
        return f"{self.schema}_marts"

    def columns(self) -> dict[str, dict[str, str]]:
        """table -> column -> type of the built marts schema."""
        rows = query_duckdb(
            self.path,
            "select table_name, column_name, data_type from information_schema.columns "
            f"where table_schema = '{self.marts_schema}' order by table_name, ordinal_position",
        )
        tables: dict[str, dict[str, str]] = {}
        for table, column, data_type in rows:
            tables.setdefault(table, {})[column] = data_type
        return tables


def write_lake(lake: Path) -> int:
    """Two hours of events, every 5 minutes, on two antennas; returns the event count."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows: dict[int, list[dict[str, Any]]] = {}
    offset = 0
    for minute in range(0, 120, 5):
        moment = START + timedelta(minutes=minute)
        for device, app, nbytes in ((ANDRES, "SKYPE", 900), (FEDE, "WHATSAPP", 700), (STRANGER, "FACETIME", 50)):  # fmt: skip
            rows.setdefault(moment.hour, []).append(
                {
                    "event_time": moment,
                    "id": device,
                    "antenna_id": ANTENNAS[offset % 2],
                    "bytes": nbytes,
                    "app": app,
                    "kafka_topic": "devices",
                    "kafka_partition": 0,
                    "kafka_offset": offset,
                    "ingested_at": moment + timedelta(seconds=30),
                }
            )
            offset += 1
    for hour, events in rows.items():
        folder = lake / "device_usage" / "year=2026" / "month=11" / "day=24" / f"hour={hour:02d}"
        folder.mkdir(parents=True, exist_ok=True)
        first, last = events[0]["kafka_offset"], events[-1]["kafka_offset"]
        table = pa.Table.from_pylist(events, schema=event_schema())
        pq.write_table(table, folder / f"devices+0+{first}+{last}.parquet")
    return offset


def build(tmp: Path, schema: str = "looker_check") -> Warehouse:
    lake, artifacts = tmp / "lake", tmp / "target"
    write_lake(lake)
    warehouse = Warehouse(tmp / "warehouse.duckdb", schema, artifacts)
    env = {
        "ANTENNA_ELT_LAKE": lake.as_uri(),
        "ANTENNA_ELT_DUCKDB_PATH": str(warehouse.path),
        "ANTENNA_ELT_DBT_SCHEMA": schema,
    }
    paths = ["--target-path", str(artifacts), "--log-path", str(artifacts)]
    run_dbt(["build", "--target", "duckdb", *paths], env=env)
    run_dbt(["docs", "generate", "--target", "duckdb", *paths], env=env)
    return warehouse
