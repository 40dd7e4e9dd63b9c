"""Apache Superset in a virtualenv of its own (``.stack/superset/venv``), installed once
per pinned requirements (a stamp file names them)."""

from __future__ import annotations

import hashlib
import subprocess
import sys
import time
from pathlib import Path

from antenna_elt.devstack.superset_db import last_line
from antenna_elt.errors import UserError

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
    digest = hashlib.sha256("\n".join(REQUIREMENTS).encode()).hexdigest()[:16]
    return venv / f".installed-{digest}"


def ensure_installed(venv: Path) -> bool:
    """Install Superset into ``venv`` unless the stamp of these requirements is there.
    Returns True when it installed."""
    stamp = requirements_stamp(venv)
    if stamp.exists() and (venv / "bin" / "superset").exists():
        return False
    started = time.monotonic()
    say(f"installing Apache Superset into {venv} (once; about 800 MB, 1-3 minutes)...")
    if not (venv / "bin" / "python").exists():
        proc = subprocess.run(
            [sys.executable, "-m", "venv", str(venv)], capture_output=True, text=True
        )
        if proc.returncode != 0:
            raise UserError(
                f"could not create the Superset virtualenv {venv}: {last_line(proc.stderr)}; "
                "install python3-venv (`apt-get install -y python3-venv`) and retry"
            )
    proc = subprocess.run(
        [
            str(venv / "bin" / "pip"),
            "install",
            "--quiet",
            "--disable-pip-version-check",
            *REQUIREMENTS,
        ],
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0:
        raise UserError(
            f"pip could not install Superset ({last_line(proc.stdout + proc.stderr)}); check "
            f"that PyPI is reachable, or delete {venv} and retry"
        )
    for old in venv.glob(".installed-*"):
        old.unlink()
    stamp.touch()
    say(f"installed Superset in {time.monotonic() - started:.0f} s")
    return True
