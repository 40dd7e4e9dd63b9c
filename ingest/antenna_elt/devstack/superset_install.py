"""Apache Superset in a virtualenv of its own (``.stack/superset/venv``), installed once
per pinned requirements (a stamp file names them)."""

from __future__ import annotations

from pathlib import Path

from antenna_elt.devstack import venvs

# shared/KNOWN.md: 6.1.0 misses rich and cachetools in its declared dependencies;
# flask-caching 2.5 breaks `superset db upgrade`.
REQUIREMENTS = (
    "apache-superset==6.1.0",
    "psycopg2-binary",
    "rich",
    "cachetools",
    "flask-caching<2.5",
)


def say(message: str) -> None:
    print(f"dashboards: {message}", flush=True)


def requirements_stamp(venv: Path) -> Path:
    return venvs.requirements_stamp(venv, REQUIREMENTS)


def ensure_installed(venv: Path) -> bool:
    """Install Superset into ``venv`` unless the stamp of these requirements is there.
    Returns True when it installed."""
    return venvs.ensure_installed(
        venv, REQUIREMENTS, tool="Apache Superset", command="superset",
        size="about 800 MB, 1-3 minutes", say=say,
    )  # fmt: skip
