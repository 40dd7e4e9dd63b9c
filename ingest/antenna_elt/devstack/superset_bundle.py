"""The dashboards bundle (``dashboards/``, a Superset import bundle kept as source files),
rendered with what the repository does not hold: the marts schema and the connection."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from antenna_elt.devstack.superset_db import connect
from antenna_elt.errors import UserError
from antenna_elt.identifiers import check_identifier
from antenna_elt.settings import PROJECT_ROOT, Settings

BUNDLE_DIR = PROJECT_ROOT / "dashboards"
MARTS_TOKEN = "__MARTS_SCHEMA__"


@dataclass(frozen=True)
class Bundle:
    contents: dict[str, str]
    """path inside the bundle -> YAML text, marts schema and connection filled in"""
    charts: int
    datasets: int
    dashboards: list[tuple[str, str]]
    """(title, slug)"""


def render_bundle(marts_schema: str, sqlalchemy_uri: str, bundle_dir: Path = BUNDLE_DIR) -> Bundle:
    """Read the bundle's files and fill in what the repository does not hold: the
    database's connection string and the marts schema."""
    import yaml  # type: ignore[import-untyped,unused-ignore]  # PyYAML comes with dbt-core

    check_identifier(marts_schema, "marts schema", "analytics_marts")
    if not (bundle_dir / "metadata.yaml").exists():
        raise UserError(
            f"{bundle_dir}/metadata.yaml is missing: the dashboards bundle is incomplete"
        )
    contents: dict[str, str] = {}
    charts = datasets = 0
    dashboards: list[tuple[str, str]] = []
    for path in sorted(bundle_dir.rglob("*.yaml")):
        rel = path.relative_to(bundle_dir).as_posix()
        if rel.startswith("screenshots/"):
            continue
        text = path.read_text().replace(MARTS_TOKEN, marts_schema)
        if rel.startswith("databases/"):
            config = yaml.safe_load(text)
            config["sqlalchemy_uri"] = sqlalchemy_uri
            text = yaml.safe_dump(config, sort_keys=False)
        elif rel.startswith("charts/"):
            charts += 1
        elif rel.startswith("datasets/"):
            datasets += 1
        elif rel.startswith("dashboards/"):
            config = yaml.safe_load(text)
            dashboards.append((config["dashboard_title"], config["slug"]))
        contents[rel] = text
    return Bundle(contents, charts, datasets, dashboards)


# the dbt models the datasets read as plain tables (models/reporting and the marts)
MARTS_READ = (
    "rpt_network_bytes_last_hour",
    "rpt_network_activity_last_hour",
    "rpt_antenna_bandwidth_last_hour",
    "rpt_bytes_hourly",
    "user_quota_limit",
    "fct_devices_active_recent",
)


def missing_marts(settings: Settings, marts_schema: str) -> list[str]:
    """The marts the dashboards read that the schema does not hold (yet)."""
    with connect(settings) as conn:
        present = {
            name
            for (name,) in conn.execute(
                "select tablename from pg_tables where schemaname = %s", (marts_schema,)
            ).fetchall()
        }
    return [name for name in MARTS_READ if name not in present]
