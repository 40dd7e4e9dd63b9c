"""User metadata: the dbt seed ``seeds/user_metadata.csv`` (id, name, email, quota)."""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

from antenna_elt.errors import UserError
from antenna_elt.settings import PROJECT_ROOT

SEED = PROJECT_ROOT / "seeds" / "user_metadata.csv"


@dataclass(frozen=True)
class User:
    id: str
    name: str
    email: str
    quota: int
    """Bytes per hour the user may use."""


def load_users(path: Path = SEED) -> list[User]:
    try:
        with open(path, newline="") as f:
            return [
                User(row["id"].lower(), row["name"], row["email"], int(row["quota"]))
                for row in csv.DictReader(f)
            ]
    except FileNotFoundError:
        raise UserError(f"user metadata not found at {path}") from None
    except (KeyError, ValueError) as exc:
        raise UserError(f"{path} is not id,name,email,quota with integer quotas: {exc}") from None
