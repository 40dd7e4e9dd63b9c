"""All settings in one typed place: read from the environment, overridden by CLI flags.

The names are the same everywhere (README, CLI, dbt profile). libpq's own ``PG*``
variables configure PostgreSQL, ``KAFKA_BOOTSTRAP_SERVERS`` configures Kafka.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from antenna_elt.errors import UserError

PROJECT_ROOT = Path(__file__).resolve().parents[2]

DEFAULT_KAFKA_PORT = 19092
DEFAULT_PG_PORT = 15432
DEFAULT_PG_USER = "antenna_elt"
DEFAULT_PG_DATABASE = "antenna_elt"


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

    @property
    def pg_conninfo(self) -> str:
        """A libpq connection string built from :attr:`pg_env` (no password in it)."""
        keys = {
            "PGHOST": "host",
            "PGPORT": "port",
            "PGUSER": "user",
            "PGDATABASE": "dbname",
        }
        return " ".join(f"{keys[k]}={v}" for k, v in self.pg_env.items() if k in keys)


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
    lake = env.get("ANTENNA_ELT_LAKE") or (home / "lake").as_uri()
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
    )
