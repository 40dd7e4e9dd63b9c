"""SQL names that come from outside the code: flags, the environment, configuration.

One rule for every schema, role and database name a user can choose: a plain lower-case
PostgreSQL identifier. Such a name needs no quoting, means the same on every engine
(PostgreSQL, DuckDB, BigQuery datasets) and cannot carry SQL of its own. Names are checked
where they enter (the CLI's argument types, :mod:`antenna_elt.settings`) and again where
Python puts them into SQL text; code that can compose with ``psycopg.sql.Identifier``
does so as well.
"""

from __future__ import annotations

import re

from antenna_elt.errors import UserError

_PLAIN = re.compile(r"[a-z_][a-z0-9_]{0,62}")
RULE = "use lower-case letters, digits and _, not starting with a digit, at most 63 characters"


def is_plain_identifier(name: str) -> bool:
    return _PLAIN.fullmatch(name) is not None


def refusal(example: str) -> str:
    """What follows a refused name in its one-line error: why, and what to use instead."""
    return f"is not a plain SQL name: {RULE} (e.g. {example})"


def check_identifier(name: str, what: str, example: str) -> str:
    """``name`` if it is a plain identifier, else a one-line :class:`UserError` naming
    ``what`` it is (a flag, a role, a database) and the fix."""
    if not is_plain_identifier(name):
        raise UserError(f"{what} {name!r} {refusal(example)}")
    return name
