"""Names from flags, the environment and configuration: plain SQL identifiers or a
one-line error naming the fix; connection strings that no value can add a keyword to;
libpq's password file for the local stack only (issue 13, finding 8)."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest
from psycopg.conninfo import conninfo_to_dict

from antenna_elt.cli.argtypes import sql_name
from antenna_elt.errors import UserError
from antenna_elt.identifiers import check_identifier, is_plain_identifier
from antenna_elt.settings import load_settings

CRAFTED = [
    "x; create table public.rt_pwned (i int); --",
    "public.rt_pwned",
    "Alerts",
    '"quoted"',
    "a b",
    "",
    "1abc",
    "a" * 64,
    "alerts\n",
    "é",
]
PLAIN = ["alerts", "raw", "_x", "analytics_marts", "t_0123abcd", "a" * 63]


@pytest.mark.parametrize("name", PLAIN)
def test_plain_lower_case_names_are_accepted(name: str) -> None:
    assert is_plain_identifier(name)
    assert check_identifier(name, "--log-schema", "alerts") == name
    assert sql_name("alerts")(name) == name


@pytest.mark.parametrize("name", CRAFTED)
def test_anything_else_is_refused_in_one_line_naming_the_fix(name: str) -> None:
    assert not is_plain_identifier(name)
    with pytest.raises(UserError) as refused:
        check_identifier(name, "--log-schema", "alerts")
    assert str(refused.value) == (
        f"--log-schema {name!r} is not a plain SQL name: use lower-case letters, digits and _, "
        "not starting with a digit, at most 63 characters (e.g. alerts)"
    )
    assert len(str(refused.value).splitlines()) == 1
    with pytest.raises(argparse.ArgumentTypeError):
        sql_name("alerts")(name)


@pytest.mark.parametrize("variable", ["ANTENNA_ELT_RAW_SCHEMA", "ANTENNA_ELT_DBT_SCHEMA"])
def test_a_crafted_schema_variable_is_one_line_naming_it(variable: str) -> None:
    value = "x; create table public.rt_pwned (i int); --"
    with pytest.raises(UserError, match=rf"^{variable}='x; create .*' is not a plain SQL name: "):
        load_settings({variable: value})


def test_the_dbt_schema_leaves_room_for_its_marts_suffix() -> None:
    assert load_settings({"ANTENNA_ELT_DBT_SCHEMA": "a" * 57}).marts_schema == "a" * 57 + "_marts"
    with pytest.raises(UserError, match=r"use at most 57, or unset it$"):
        load_settings({"ANTENNA_ELT_DBT_SCHEMA": "a" * 58})


def test_no_libpq_variable_can_add_a_keyword_to_the_connection_string() -> None:
    settings = load_settings(
        {"PGUSER": "me password=stolen", "PGDATABASE": "it's \\ mine", "PGPASSFILE": "/a b/pgpass"}
    )
    assert conninfo_to_dict(settings.pg_conninfo) == {
        "host": "127.0.0.1",
        "port": "15432",
        "user": "me password=stolen",
        "dbname": "it's \\ mine",
        "passfile": "/a b/pgpass",
    }
    assert conninfo_to_dict(settings.conninfo(dbname="postgres"))["dbname"] == "postgres"


def test_the_password_file_is_the_local_stacks_only() -> None:
    local = load_settings({"ANTENNA_ELT_HOME": "/tmp/h"})
    assert local.pg_env["PGPASSFILE"] == "/tmp/h/secrets/pgpass"
    assert "password" not in conninfo_to_dict(local.pg_conninfo)
    # a server of the user's own: their PGPASSWORD / ~/.pgpass, never the stack's file
    external = load_settings({"ANTENNA_ELT_HOME": "/tmp/h", "PGHOST": "db.example"})
    assert "PGPASSFILE" not in external.pg_env and external.pg_child_env == {}
    # a password file the user names is kept
    own = load_settings({"ANTENNA_ELT_HOME": "/tmp/h", "PGPASSFILE": "/home/me/.pgpass"})
    assert own.pg_child_env == {"PGPASSFILE": "/home/me/.pgpass"}


def test_a_home_too_long_for_the_servers_socket_is_one_line_naming_the_fix(tmp_path: Path) -> None:
    """PostgreSQL cannot create a socket whose path is over 107 bytes: it would fail to start
    with the reason only in its log. `stack up` refuses such a home before creating anything."""
    from antenna_elt.devstack.postgres import check_socket_path, start_postgres

    home = tmp_path / ("h" * 100)
    settings = load_settings({"ANTENNA_ELT_HOME": str(home), "ANTENNA_ELT_PG_PORT": "15432"})
    with pytest.raises(UserError) as refused:
        start_postgres(settings)
    assert str(refused.value) == (
        f"PostgreSQL's socket {home.resolve()}/postgres/socket/.s.PGSQL.15432 would be "
        f"{len(str(home.resolve())) + 31} bytes, over the 107 a socket path may have: set "
        f"ANTENNA_ELT_HOME to a shorter directory than {home.resolve()}"
    )
    assert not home.exists()
    check_socket_path(
        load_settings({"ANTENNA_ELT_HOME": "/tmp/ae", "ANTENNA_ELT_PG_PORT": "15432"})
    )
