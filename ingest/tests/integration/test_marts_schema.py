"""The marts schema the Python side reads (notify, report, dashboards, the demo) is the
one dbt builds: the rule in settings agrees with dbt's own manifest. Adding a
generate_schema_name macro to the project makes this fail instead of breaking silently."""

from __future__ import annotations

import json
from pathlib import Path

from antenna_elt.dbt import run_dbt
from antenna_elt.settings import load_settings


def test_marts_schema_rule_agrees_with_dbt(tmp_path: Path) -> None:
    env = {"ANTENNA_ELT_DBT_SCHEMA": "rule_check"}
    run_dbt(["parse", "--no-partial-parse", "--target-path", str(tmp_path)], env=env)
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    marts = {
        node["name"]: node["schema"]
        for node in manifest["nodes"].values()
        if node["resource_type"] == "model" and node["fqn"][1] == "marts"
    }
    expected = load_settings(env).marts_schema
    assert expected == "rule_check_marts"
    assert {"bytes", "bytes_hourly", "user_quota_limit", "fct_quota_breaches"} <= set(marts)
    assert set(marts.values()) == {expected}
