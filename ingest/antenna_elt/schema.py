"""The one definition of the landed tables: raw events and rejects.

Both ingestors land the same columns (PostgreSQL tables, Parquet files in the lake), the
BigQuery loader creates them, and the dbt source ``raw`` (models/staging/_raw__sources.yml)
documents them; a unit test checks that the YAML lists exactly these columns. Each column
is rendered where it is needed: :func:`postgres_columns`, :func:`arrow_schema`,
:func:`bigquery_fields`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

# logical type -> (PostgreSQL, BigQuery); Arrow types are built in arrow_schema
_POSTGRES = {
    "timestamp": "timestamptz",
    "uuid": "uuid",
    "text": "text",
    "int32": "integer",
    "int64": "bigint",
    "binary": "bytea",
}
_BIGQUERY = {
    "timestamp": "TIMESTAMP",
    "uuid": "STRING",
    "text": "STRING",
    "int32": "INT64",
    "int64": "INT64",
    "binary": "BYTES",
}


@dataclass(frozen=True)
class Column:
    name: str
    type: str
    """timestamp (UTC, microseconds) | uuid | text | int32 | int64 | binary"""
    nullable: bool = False
    check: str | None = None
    """A PostgreSQL check constraint on the column."""
    ingest_time: bool = False
    """Set by the sink when it commits (PostgreSQL: ``default now()``), not by the message."""
    postgres_default: str | None = None
    """Filled by PostgreSQL itself (an expression), not by the sink."""
    in_lake: bool = True
    """Stored in the lake's Parquet files (and so loaded into BigQuery)."""


@dataclass(frozen=True)
class Table:
    name: str
    columns: tuple[Column, ...]
    key: tuple[str, ...] = ()
    """Primary key where PostgreSQL enforces one."""

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.columns]

    @property
    def written_names(self) -> list[str]:
        """Columns a sink writes (the ingest time and sequence are the database's defaults)."""
        return [c.name for c in self.columns if not c.ingest_time and not c.postgres_default]


_KAFKA_COORDINATES = (
    Column("kafka_topic", "text"),
    Column("kafka_partition", "int32"),
    Column("kafka_offset", "int64"),
)
_INGESTED_AT = Column("ingested_at", "timestamp", ingest_time=True)

EVENTS = Table(
    "device_usage",
    (
        Column("event_time", "timestamp"),
        Column("id", "uuid"),
        Column("antenna_id", "uuid"),
        Column("bytes", "int64", check="bytes >= 0"),
        Column("app", "text"),
        *_KAFKA_COORDINATES,
        _INGESTED_AT,
        # Orders ingestion for dbt's incremental builds (macros/ingest_increments.sql). In
        # PostgreSQL the id of the transaction that landed the row: a build reads the rows
        # below the oldest transaction still running when it starts, a set no later commit
        # can change. The lake keeps no such column: the DuckDB warehouse numbers each file
        # by the build that first saw it, BigQuery each hour by the load that loaded it.
        Column(
            "ingest_seq",
            "int64",
            postgres_default="pg_current_xact_id()::text::bigint",
            in_lake=False,
        ),
    ),
)
"""Valid events of the devices topic, one row per Kafka offset."""

REJECTS = Table(
    "device_usage_rejects",
    (
        *_KAFKA_COORDINATES,
        Column("raw_value", "binary", nullable=True),
        Column("reason", "text"),
        _INGESTED_AT,
    ),
    key=("kafka_topic", "kafka_partition", "kafka_offset"),
)
"""Messages that break the event contract, with the reason."""


# -- renderings ---------------------------------------------------------------------------


def postgres_columns(table: Table) -> str:
    """The column list of ``create table`` (with the primary key, if any)."""
    lines = []
    for c in table.columns:
        line = f"    {c.name:<15} {_POSTGRES[c.type]:<11}"
        if not c.nullable:
            line += " not null"
        if c.check:
            line += f" check ({c.check})"
        if c.ingest_time:
            line += " default now()"
        if c.postgres_default:
            line += f" default ({c.postgres_default})"
        lines.append(line.rstrip())
    if table.key:
        lines.append(f"    primary key ({', '.join(table.key)})")
    return ",\n".join(lines)


def arrow_schema(table: Table) -> Any:
    """The Parquet files' explicit schema."""
    import pyarrow as pa

    types = {
        "timestamp": pa.timestamp("us", tz="UTC"),
        "uuid": pa.string(),
        "text": pa.string(),
        "int32": pa.int32(),
        "int64": pa.int64(),
        "binary": pa.binary(),
    }
    return pa.schema(
        [pa.field(c.name, types[c.type], nullable=c.nullable) for c in table.columns if c.in_lake]
    )


def bigquery_fields(table: Table) -> tuple[tuple[str, str, str], ...]:
    """(name, BigQuery type, mode) of every column."""
    return tuple(
        (c.name, _BIGQUERY[c.type], "NULLABLE" if c.nullable else "REQUIRED")
        for c in table.columns
        if c.in_lake
    )
