"""Generated secrets of the local stack: files only the project's OS user can read.

Every password the stack generates (PostgreSQL's, Superset's) lives in a file of mode 600
under ``.stack/`` (ignored by git, never committed); a directory that holds only secrets
has mode 700. Secrets reach programs through files, the environment or stdin, never on a
command line (which every user can read in ``ps``).
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path


def private_dir(path: Path) -> Path:
    """``path`` as a directory only its owner can enter (created if missing)."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    path.chmod(0o700)
    return path


def write_private(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` with mode 600 from the first byte (a temporary file
    renamed over it, so a reader never sees half a file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.replace(temporary, path)


def read_or_create_secret(path: Path, nbytes: int = 32) -> str:
    """A secret generated once and kept in ``path`` (mode 600; made so if it was not)."""
    if path.exists():
        value = path.read_text().strip()
        if value:
            if path.stat().st_mode & 0o077:
                path.chmod(0o600)
            return value
    value = new_password(nbytes)
    write_private(path, value + "\n")
    return value


def new_password(nbytes: int = 32) -> str:
    """A random password of URL-safe characters (nothing a pgpass file or URI must escape)."""
    return secrets.token_urlsafe(nbytes)
