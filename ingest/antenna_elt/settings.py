"""Every setting in one typed place: read from the environment, overridden by CLI flags.

This is the only module that reads environment variables. The names are the same
everywhere (README, CLI, dbt profile). libpq's own ``PG*`` variables configure PostgreSQL,
``KAFKA_BOOTSTRAP_SERVERS`` configures Kafka.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from antenna_elt.errors import UserError
from antenna_elt.identifiers import is_plain_identifier, refusal

PROJECT_ROOT = Path(__file__).resolve().parents[2]

DEFAULT_KAFKA_PORT = 19092
DEFAULT_PG_PORT = 15432
DEFAULT_PG_USER = "antenna_elt"
DEFAULT_PG_DATABASE = "antenna_elt"
DEFAULT_SUPERSET_PORT = 8088
DEFAULT_AIRFLOW_PORT = 8090
DEFAULT_DBT_SCHEMA = "analytics"
DEFAULT_SPARK_MASTER = "local[2]"
MARTS_CUSTOM_SCHEMA = "marts"
"""The ``+schema`` of ``models/marts`` in dbt_project.yml."""
DEFAULT_FUTURE_SKEW = 300
"""Seconds an event time may be ahead of its Kafka record's time (the event contract)."""
PASSFILE_NAME = "pgpass"
"""libpq's password file of the local PostgreSQL, in :attr:`Settings.secrets_dir`."""

# libpq variable -> connection keyword, for the connection strings built here
_CONNINFO_KEYS = {
    "PGHOST": "host",
    "PGPORT": "port",
    "PGUSER": "user",
    "PGDATABASE": "dbname",
    "PGPASSFILE": "passfile",
}
KAFKA_CLIENTS = ("kafka-python", "librdkafka")
"""The Kafka client libraries the ingestors can consume with (ANTENNA_ELT_KAFKA_CLIENT)."""
DEFAULT_KAFKA_CLIENT = "librdkafka"


def _env_int(env: dict[str, str], name: str, default: int) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise UserError(
            f"{name}={raw!r} is not an integer; set it to a number or unset it"
        ) from None


def _env_non_negative(env: dict[str, str], name: str, default: int) -> int:
    value = _env_int(env, name, default)
    if value < 0:
        raise UserError(f"{name}={value} is negative; set it to a number of seconds or unset it")
    return value


def _env_choice(env: dict[str, str], name: str, choices: tuple[str, ...], default: str) -> str:
    raw = (env.get(name) or "").strip()
    if not raw:
        return default
    if raw not in choices:
        raise UserError(f"{name}={raw!r} is not one of {', '.join(choices)}; set one or unset it")
    return raw


def dbt_schema_name(target_schema: str, custom_schema: str | None) -> str:
    """dbt's default ``generate_schema_name``: ``<target schema>_<custom schema>``, or the
    target schema when a model sets none. The project does not override the macro; a test
    (``test_marts_schema_rule_agrees_with_dbt``) fails the day it does."""
    return f"{target_schema}_{custom_schema.strip()}" if custom_schema else target_schema


def conninfo_value(value: str) -> str:
    """A value of a libpq connection string, quoted when it needs to be (spaces, quotes,
    backslashes, empty), so that no value can add a keyword of its own."""
    if value and not re.search(r"[\s'\\]", value):
        return value
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


@dataclass(frozen=True)
class BigQuerySettings:
    """Where ``antenna-elt load bigquery`` loads (flags override every field)."""

    project: str = ""
    """GOOGLE_CLOUD_PROJECT"""
    dataset: str = ""
    """BIGQUERY_DATASET"""
    table: str = "device_usage"
    """BIGQUERY_TABLE"""
    location: str | None = None
    """BIGQUERY_LOCATION"""


@dataclass(frozen=True)
class Settings:
    """Connection and location settings shared by every subcommand."""

    home: Path
    """ANTENNA_ELT_HOME: the one ignored directory holding the local stack's data."""
    kafka_port: int
    """ANTENNA_ELT_KAFKA_PORT: port of the project-local broker."""
    kafka_bootstrap_servers: str
    """KAFKA_BOOTSTRAP_SERVERS: where clients connect (default: the local broker)."""
    kafka_external: bool
    """True when KAFKA_BOOTSTRAP_SERVERS was set: the stack does not start a broker."""
    topic: str
    """ANTENNA_ELT_TOPIC: the events topic (default ``devices``)."""
    pg_port: int
    """ANTENNA_ELT_PG_PORT: port of the project-local PostgreSQL."""
    pg_external: bool
    """True when PGHOST or PGPORT was set: the stack does not start a server."""
    pg_env: dict[str, str] = field(default_factory=dict)
    """libpq variables (PGHOST, PGPORT, PGUSER, PGDATABASE, ...) to connect with."""
    lake_uri: str = ""
    """ANTENNA_ELT_LAKE: the Parquet lake, a path or file://, s3://, gs:// URI."""
    raw_schema: str = "raw"
    """ANTENNA_ELT_RAW_SCHEMA: landing schema of the PostgreSQL ingestor."""
    dbt_schema: str = DEFAULT_DBT_SCHEMA
    """ANTENNA_ELT_DBT_SCHEMA: the dbt profile's target schema."""
    duckdb_path: Path = PROJECT_ROOT / ".stack" / "warehouse.duckdb"
    """ANTENNA_ELT_DUCKDB_PATH: the dbt duckdb target's database file."""
    s3_endpoint: str | None = None
    """ANTENNA_ELT_S3_ENDPOINT or AWS_ENDPOINT_URL: an S3-compatible endpoint for s3:// lakes."""
    superset_port_text: str = ""
    """ANTENNA_ELT_SUPERSET_PORT as given (checked by :attr:`superset_port` when used)."""
    airflow_port: int = DEFAULT_AIRFLOW_PORT
    """ANTENNA_ELT_AIRFLOW_PORT: port of the local Airflow's API server and UI."""
    alerts_topic: str = "quota-alerts"
    """ANTENNA_ELT_ALERTS_TOPIC: the topic quota alerts go to."""
    alert_log_schema: str = "alerts"
    """ANTENNA_ELT_ALERT_LOG_SCHEMA: the schema of the alert log (the outbox)."""
    dbt_profiles_dir: Path | None = None
    """DBT_PROFILES_DIR (default: .stack/dbt with the example profile copied in)."""
    bigquery: BigQuerySettings = field(default_factory=BigQuerySettings)
    compact_grace: float = 3600.0
    """ANTENNA_ELT_COMPACT_GRACE: seconds a file replaced by lake compaction is kept (so that
    a build that registered it can still read it)."""
    compact_target_mib: int = 128
    """ANTENNA_ELT_COMPACT_TARGET_MIB: size of a compacted lake file, in MiB."""
    compact_failpoint: str | None = None
    """ANTENNA_ELT_COMPACT_FAILPOINT: a compaction step to stop at for ever (tests kill -9
    there: ``planned``, ``written``, ``version-created``, ``committed``, ``deleted``)."""
    notify_failpoint: str | None = None
    """ANTENNA_ELT_NOTIFY_FAILPOINT: fault injection for the tests (``after-publish``)."""
    future_skew: int = DEFAULT_FUTURE_SKEW
    """ANTENNA_ELT_FUTURE_SKEW: seconds an event time may be ahead of its Kafka record's
    time (capped by the ingestor's clock) before both ingestors reject it as
    ``timestamp_in_future`` (contract.future_bound)."""
    spark_master: str = DEFAULT_SPARK_MASTER
    """ANTENNA_ELT_SPARK_MASTER: Spark master of ``ingest spark`` run as a plain command
    (default ``local[2]``); ignored under spark-submit, which sets its own."""
    spark_checkpoints: str = ""
    """ANTENNA_ELT_SPARK_CHECKPOINTS: where ``ingest spark`` keeps its streaming
    checkpoints, a path or a URI Spark writes (default ``<home>/spark/checkpoints``; on a
    cluster a shared one: hdfs://, s3a://, gs://, dbfs:/)."""
    spark_submitted: bool = False
    """True when running under spark-submit (it sets PYSPARK_GATEWAY_PORT for the Python
    driver): the session comes from spark-submit's configuration."""
    kafka_client: str = DEFAULT_KAFKA_CLIENT
    """ANTENNA_ELT_KAFKA_CLIENT: the Kafka client library both ingestors consume with,
    ``kafka-python`` (default) or ``librdkafka`` (confluent-kafka)."""

    @property
    def pg_conninfo(self) -> str:
        """A libpq connection string built from :attr:`pg_env`: no password in it, but for
        the local stack the ``passfile`` that holds it."""
        return self.conninfo()

    def conninfo(self, **overrides: str) -> str:
        """:attr:`pg_conninfo` with some keywords replaced (``dbname=``, ``user=`` ...)."""
        params = {_CONNINFO_KEYS[k]: v for k, v in self.pg_env.items() if k in _CONNINFO_KEYS}
        params.update(overrides)
        return " ".join(f"{key}={conninfo_value(value)}" for key, value in params.items())

    @property
    def secrets_dir(self) -> Path:
        """Where the local stack keeps its generated passwords (mode 700, files 600)."""
        return self.home / "secrets"

    @property
    def pg_child_env(self) -> dict[str, str]:
        """What a child process that connects with libpq on its own (dbt, Superset) needs
        beyond this process's environment: the local stack's password file."""
        return {k: v for k, v in self.pg_env.items() if k == "PGPASSFILE"}

    @property
    def superset_port(self) -> int:
        """ANTENNA_ELT_SUPERSET_PORT: port of the local Superset (default 8088)."""
        text = self.superset_port_text or str(DEFAULT_SUPERSET_PORT)
        try:
            port = int(text)
        except ValueError:
            port = 0
        if not 0 < port < 65536:
            raise UserError(
                f"ANTENNA_ELT_SUPERSET_PORT={text!r} is not a port number (1-65535); "
                "set it to a free port or unset it"
            )
        return port

    @property
    def marts_schema(self) -> str:
        """The schema dbt builds the marts in: ``<ANTENNA_ELT_DBT_SCHEMA or analytics>_marts``."""
        return dbt_schema_name(self.dbt_schema, MARTS_CUSTOM_SCHEMA)


def load_settings(env: dict[str, str] | None = None) -> Settings:
    """Build :class:`Settings` from ``env`` (default: the process environment)."""
    env = dict(os.environ if env is None else env)
    home = Path(env.get("ANTENNA_ELT_HOME") or PROJECT_ROOT / ".stack").resolve()
    kafka_port = _env_int(env, "ANTENNA_ELT_KAFKA_PORT", DEFAULT_KAFKA_PORT)
    pg_port = _env_int(env, "ANTENNA_ELT_PG_PORT", DEFAULT_PG_PORT)
    bootstrap = env.get("KAFKA_BOOTSTRAP_SERVERS", "")
    pg_external = bool(env.get("PGHOST") or env.get("PGPORT"))
    pg_env = {
        "PGHOST": env.get("PGHOST") or "127.0.0.1",
        "PGPORT": env.get("PGPORT") or str(pg_port),
        "PGUSER": env.get("PGUSER") or DEFAULT_PG_USER,
        "PGDATABASE": env.get("PGDATABASE") or DEFAULT_PG_DATABASE,
    }
    for passthrough in ("PGPASSWORD", "PGSSLMODE", "PGPASSFILE", "PGSERVICE"):
        if env.get(passthrough):
            pg_env[passthrough] = env[passthrough]
    if not pg_external and "PGPASSFILE" not in pg_env:
        # the local server's generated password (`stack up` writes it); a server of your
        # own keeps your own PGPASSWORD, PGPASSFILE or ~/.pgpass
        pg_env["PGPASSFILE"] = str(home / "secrets" / PASSFILE_NAME)
    lake = env.get("ANTENNA_ELT_LAKE") or (home / "lake").as_uri()
    profiles = env.get("DBT_PROFILES_DIR")
    return Settings(
        home=home,
        kafka_port=kafka_port,
        kafka_bootstrap_servers=bootstrap or f"127.0.0.1:{kafka_port}",
        kafka_external=bool(bootstrap),
        topic=env.get("ANTENNA_ELT_TOPIC") or "devices",
        pg_port=pg_port,
        pg_external=pg_external,
        pg_env=pg_env,
        lake_uri=lake,
        raw_schema=_env_identifier(env, "ANTENNA_ELT_RAW_SCHEMA", "raw"),
        dbt_schema=_env_identifier(env, "ANTENNA_ELT_DBT_SCHEMA", DEFAULT_DBT_SCHEMA),
        duckdb_path=Path(
            env.get("ANTENNA_ELT_DUCKDB_PATH") or PROJECT_ROOT / ".stack" / "warehouse.duckdb"
        ),
        s3_endpoint=env.get("ANTENNA_ELT_S3_ENDPOINT") or env.get("AWS_ENDPOINT_URL") or None,
        superset_port_text=env.get("ANTENNA_ELT_SUPERSET_PORT") or "",
        airflow_port=_env_int(env, "ANTENNA_ELT_AIRFLOW_PORT", DEFAULT_AIRFLOW_PORT),
        alerts_topic=env.get("ANTENNA_ELT_ALERTS_TOPIC") or "quota-alerts",
        alert_log_schema=_env_identifier(env, "ANTENNA_ELT_ALERT_LOG_SCHEMA", "alerts"),
        dbt_profiles_dir=Path(profiles) if profiles else None,
        bigquery=BigQuerySettings(
            project=env.get("GOOGLE_CLOUD_PROJECT") or "",
            dataset=env.get("BIGQUERY_DATASET") or "",
            table=env.get("BIGQUERY_TABLE") or "device_usage",
            location=env.get("BIGQUERY_LOCATION") or None,
        ),
        compact_grace=float(_env_non_negative(env, "ANTENNA_ELT_COMPACT_GRACE", 3600)),
        compact_target_mib=_env_int(env, "ANTENNA_ELT_COMPACT_TARGET_MIB", 128),
        compact_failpoint=env.get("ANTENNA_ELT_COMPACT_FAILPOINT") or None,
        notify_failpoint=env.get("ANTENNA_ELT_NOTIFY_FAILPOINT") or None,
        future_skew=_env_non_negative(env, "ANTENNA_ELT_FUTURE_SKEW", DEFAULT_FUTURE_SKEW),
        spark_master=env.get("ANTENNA_ELT_SPARK_MASTER") or DEFAULT_SPARK_MASTER,
        spark_checkpoints=env.get("ANTENNA_ELT_SPARK_CHECKPOINTS")
        or str(home / "spark" / "checkpoints"),
        spark_submitted=bool(env.get("PYSPARK_GATEWAY_PORT")),
        kafka_client=_env_choice(
            env, "ANTENNA_ELT_KAFKA_CLIENT", KAFKA_CLIENTS, DEFAULT_KAFKA_CLIENT
        ),
    )


def _env_identifier(env: dict[str, str], name: str, default: str) -> str:
    """A schema name from the environment, checked: the Python side puts it into SQL."""
    value = env.get(name) or default
    if not is_plain_identifier(value):
        raise UserError(f"{name}={value!r} {refusal(default)}; or unset it")
    if name == "ANTENNA_ELT_DBT_SCHEMA":
        marts = dbt_schema_name(value, MARTS_CUSTOM_SCHEMA)
        if not is_plain_identifier(marts):
            raise UserError(
                f"{name}={value!r} makes the marts schema {marts!r}, longer than PostgreSQL's "
                f"63 characters: use at most {63 - len(marts) + len(value)}, or unset it"
            )
    return value


def process_environment() -> dict[str, str]:
    """A copy of this process's environment, for the child processes we start
    (dbt, Superset) that read their own variables."""
    return dict(os.environ)
