"""Tools the project installs into virtualenvs of their own under .stack (Superset, Airflow),
once per pinned requirements: a stamp file names them, so a second run costs nothing."""

from __future__ import annotations

import hashlib
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from antenna_elt.errors import UserError


def last_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1].strip() if lines else "(no output)"


def requirements_stamp(venv: Path, requirements: Sequence[str]) -> Path:
    digest = hashlib.sha256("\n".join(requirements).encode()).hexdigest()[:16]
    return venv / f".installed-{digest}"


def ensure_installed(
    venv: Path,
    requirements: Sequence[str],
    *,
    tool: str,
    command: str,
    size: str,
    say: Callable[[str], None],
) -> bool:
    """Install ``requirements`` into ``venv`` unless their stamp is there (and ``command``
    is in its bin). Returns True when it installed."""
    stamp = requirements_stamp(venv, requirements)
    if stamp.exists() and (venv / "bin" / command).exists():
        return False
    started = time.monotonic()
    say(f"installing {tool} into {venv} (once; {size})...")
    if not (venv / "bin" / "python").exists():
        proc = subprocess.run(
            [sys.executable, "-m", "venv", str(venv)], capture_output=True, text=True
        )
        if proc.returncode != 0:
            raise UserError(
                f"could not create the {tool} virtualenv {venv}: {last_line(proc.stderr)}; "
                "install python3-venv (`apt-get install -y python3-venv`) and retry"
            )
    proc = subprocess.run(
        [str(venv / "bin" / "pip"), "install", "--quiet", "--disable-pip-version-check",
         *requirements],
        capture_output=True,
        text=True,
    )  # fmt: skip
    if proc.returncode != 0:
        raise UserError(
            f"pip could not install {tool} ({last_line(proc.stdout + proc.stderr)}); check "
            f"that PyPI is reachable, or delete {venv} and retry"
        )
    for old in venv.glob(".installed-*"):
        old.unlink()
    stamp.touch()
    say(f"installed {tool} in {time.monotonic() - started:.0f} s")
    return True
