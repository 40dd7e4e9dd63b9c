"""The LookML project in looker/: generated from the dbt project, true to what dbt builds.

No Looker instance can run here, so the project is checked as far as it can be without
one: every file parses (lkml for LookML, YAML for the dashboards), every field names a
column of the built mart with a compatible type, every model a dashboard exposure lists has
a view, the dashboards are the Superset dashboards' twins, and regenerating gives exactly
the committed files. Each check is also shown to fail when its rule is broken.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml
from warehouse import Warehouse

from antenna_elt.devstack.looker import validate
from antenna_elt.devstack.looker.dashboards import DASHBOARDS
from antenna_elt.devstack.looker.dbt_project import Project, load_project, parse_manifest
from antenna_elt.devstack.looker.generate import differences, generate, render, write

ROOT = Path(__file__).resolve().parents[3]
LOOKER = ROOT / "looker"


@pytest.fixture(scope="module")
def project() -> Project:
    return load_project(parse_manifest(ROOT))


@pytest.fixture(scope="module")
def built(duckdb_warehouse: Warehouse) -> dict[str, dict[str, str]]:
    return duckdb_warehouse.columns()


def test_regenerating_gives_exactly_the_committed_files(project: Project) -> None:
    assert differences(render(project), LOOKER) == []


def test_the_committed_project_passes_every_check(
    project: Project, built: dict[str, dict[str, str]]
) -> None:
    assert validate.problems(LOOKER, built, project) == []


def test_every_dashboard_exposure_has_its_views_and_looker_has_both_dashboards(
    project: Project,
) -> None:
    listed = {model for d in project.dashboards for model in d.models}
    assert listed == {
        "rpt_network_bytes_last_hour",
        "rpt_network_activity_last_hour",
        "rpt_antenna_bandwidth_last_hour",
        "rpt_bytes_hourly",
        "fct_devices_active_recent",
        "user_quota_limit",
    }
    views = {p.name.removesuffix(".view.lkml") for p in (LOOKER / "views").glob("*.view.lkml")}
    assert views == listed | {"dim_users"}, "plus the user dimension user_quota_limit joins"
    assert {d.name for d in project.dashboards} >= {
        "looker_network_live_dashboard",
        "looker_hourly_usage_quotas_dashboard",
    }


def test_keys_and_descriptions_come_from_the_dbt_project(project: Project) -> None:
    import lkml

    view = lkml.load((LOOKER / "views" / "fct_devices_active_recent.view.lkml").read_text())
    (parsed,) = view["views"]
    dims = {d["name"]: d for d in parsed["dimensions"]}
    assert dims["active_minutes"]["primary_key"] == "yes"  # its unique test
    assert dims["devices_active"]["type"] == "number"  # data_type: bigint
    assert dims["devices_active"]["description"] == "Devices with an event in the look-back."
    assert {m["name"] for m in parsed["measures"]} == {"count", "max_devices_active"}
    quota = lkml.load((LOOKER / "views" / "user_quota_limit.view.lkml").read_text())["views"][0]
    (key,) = [d for d in quota["dimensions"] if d.get("primary_key") == "yes"]
    assert key["sql"] == "CONCAT(${TABLE}.email, '|', ${TABLE}.timestamp)"
    assert project.models["user_quota_limit"].key == ("email", "timestamp")


def test_each_superset_dashboard_has_a_looker_twin_with_the_same_charts() -> None:
    superset = {}
    for path in (ROOT / "dashboards" / "dashboards").glob("*.yaml"):
        config = yaml.safe_load(path.read_text())
        superset[config["slug"]] = (
            config["dashboard_title"],
            {
                node["meta"]["sliceName"]
                for node in config["position"].values()
                if isinstance(node, dict) and node.get("type") == "CHART"
            },
        )
    looker = {}
    for dashboard in DASHBOARDS:
        (document,) = yaml.safe_load(
            (LOOKER / "dashboards" / f"{dashboard.name}.dashboard.lookml").read_text()
        )
        looker[dashboard.superset_slug] = (
            document["title"],
            {element["title"] for element in document["elements"]},
        )
    assert looker == superset


# -- each check fails when its rule is broken ------------------------------------------------


@pytest.fixture
def copy(tmp_path: Path) -> Path:
    shutil.copytree(LOOKER, tmp_path / "looker")
    return tmp_path / "looker"


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, f"{old!r} not in {path.name}"
    path.write_text(text.replace(old, new, 1))


def test_a_field_naming_a_missing_column_fails(
    copy: Path, project: Project, built: dict[str, dict[str, str]]
) -> None:
    view = copy / "views" / "rpt_antenna_bandwidth_last_hour.view.lkml"
    edit(view, "sql: ${TABLE}.devices_seen ;;", "sql: ${TABLE}.devices_sen ;;")
    assert validate.problems(copy, built, project) == [
        "field-column: rpt_antenna_bandwidth_last_hour.devices_seen names column "
        "devices_sen, which rpt_antenna_bandwidth_last_hour does not have"
    ]


def test_a_field_of_the_wrong_type_fails(
    copy: Path, project: Project, built: dict[str, dict[str, str]]
) -> None:
    view = copy / "views" / "rpt_bytes_hourly.view.lkml"
    edit(view, "  dimension: id {\n    type: string", "  dimension: id {\n    type: number")
    (problem,) = validate.problems(copy, built, project)
    assert problem.startswith("field-column: rpt_bytes_hourly.id is a LookML number, but column id")


def test_a_missing_view_a_broken_file_and_an_unknown_dashboard_field_fail(
    copy: Path, project: Project, built: dict[str, dict[str, str]]
) -> None:
    (copy / "views" / "dim_users.view.lkml").unlink()
    broken = copy / "views" / "rpt_bytes_hourly.view.lkml"
    broken.write_text(broken.read_text().rstrip().removesuffix("}"))  # unclosed view
    edit(
        copy / "dashboards" / "network_live.dashboard.lookml",
        "fct_devices_active_recent.max_devices_active",
        "fct_devices_active_recent.sum_devices_active",
    )
    found = validate.problems(copy, built, project)
    rules = {line.split(":")[0] for line in found}
    assert {"lkml-parse", "exposure-view", "field-reference"} <= rules, found
    assert any("dim_users" in line for line in found), "the join to the deleted view"
    assert any("sum_devices_active" in line for line in found)


def test_a_hand_edit_is_drift_that_the_check_reports(copy: Path, project: Project) -> None:
    edit(copy / "views" / "dim_users.view.lkml", 'description: "Email."', 'description: "Mail."')
    (copy / "views" / "stray.view.lkml").write_text("view: stray {}\n")
    assert differences(render(project), copy) == [
        "views/dim_users.view.lkml",
        "views/stray.view.lkml",
    ]


def test_make_looker_check_fails_on_drift_and_regenerating_repairs_it(
    copy: Path, project: Project, capsys: pytest.CaptureFixture[str]
) -> None:
    (copy / "manifest.lkml").write_text('project_name: "edited"\n')
    assert generate(out=copy, check=True) == 1
    assert "manifest.lkml" in capsys.readouterr().err
    assert write(render(project), copy) == ["manifest.lkml"]
    assert differences(render(project), copy) == []
