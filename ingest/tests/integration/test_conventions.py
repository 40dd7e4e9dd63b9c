"""The team's dbt conventions (dbt-bouncer.yml), checked on dbt's manifest.

`make lint` runs the manifest checks on both targets (antenna-elt conventions);
here the catalog check runs on a built warehouse, and a copy of the project with each rule
broken on purpose shows that the check fails and names the rule.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import copy_project
from warehouse import Warehouse

from antenna_elt.devstack.conventions import check_target

ROOT = Path(__file__).resolve().parents[3]


def test_every_built_column_is_documented(duckdb_warehouse: Warehouse) -> None:
    passed, report = check_target(ROOT, "duckdb", duckdb_warehouse.artifacts)
    assert passed, report
    assert "manifest and catalog checks" in report
    assert "documentation: models 22/22 (100%), columns" in report


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A copy of the dbt project to break."""
    return copy_project(tmp_path)


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, f"{old!r} not in {path}"
    path.write_text(text.replace(old, new, 1))


def test_each_broken_rule_fails_the_check_and_is_named(project: Path) -> None:
    models = project / "models"
    # a model without a description, a column without one
    edit(
        models / "reporting" / "_reporting__models.yml",
        "  - name: rpt_bytes_hourly\n    description: >\n",
        "  - name: rpt_bytes_hourly\n    x_description: >\n",
    )
    edit(
        models / "marts" / "_marts__models.yml",
        "      - name: devices_seen\n        description: Distinct devices on the antenna in the window.\n",
        "      - name: devices_seen\n",
    )
    # a mart without its key test
    edit(
        models / "marts" / "_marts__models.yml",
        "        data_type: integer\n        data_tests: [unique, not_null]\n",
        "        data_type: integer\n        data_tests: [not_null]\n",
    )
    # source() outside staging, in a reporting model whose name breaks the rpt_ prefix
    (models / "reporting" / "raw_peek.sql").write_text(
        "select count(*) as events from {{ source('raw', 'device_usage') }}\n"
    )
    # a model outside the four layers
    (models / "adhoc").mkdir()
    (models / "adhoc" / "stg_adhoc__peek.sql").write_text("select 1 as one\n")
    # a source without freshness, and one nobody reads
    edit(
        models / "staging" / "_raw__sources.yml",
        "      freshness:\n        warn_after: {count: 15, period: minute}\n"
        "        error_after: {count: 2, period: hour}\n",
        "",
    )
    edit(
        models / "staging" / "_raw__sources.yml",
        "    tables:\n",
        "    tables:\n      - name: forgotten\n        description: Read by no model.\n",
    )
    # an incremental mart that does not say which buckets its tests read on a schedule
    edit(
        models / "marts" / "fct_usage_hourly.sql",
        "        meta={'ingest_additive': ingest_additive(), 'ingest_bucket': {'column': 'hour_epoch', 'grain': 3600}},\n",
        "        meta={'ingest_additive': ingest_additive()},\n",
    )
    passed, report = check_target(project, "postgres")
    assert not passed
    for rule, subject in (
        ("check_model_has_meta_keys", "fct_usage_hourly"),
        ("check_model_description_populated", "rpt_bytes_hourly"),
        ("check_model_column_description_populated", "fct_antenna_bandwidth_windowed"),
        ("check_model_has_unique_test", "fct_devices_active_recent"),
        ("check_lineage_source_cannot_be_used", "raw_peek"),
        ("check_model_names", "raw_peek"),
        ("check_source_freshness_populated", "raw_device_usage"),
        ("check_source_not_orphaned", "raw_forgotten"),
        ("check_model_directories", "stg_adhoc__peek"),
        ("check_model_has_tests_by_name", "raw_peek"),
        ("check_model_documentation_coverage", "ERROR"),
        ("check_model_test_coverage", "ERROR"),
    ):
        failing = [line for line in report.splitlines() if rule in line]
        assert failing, f"{rule} did not fail:\n{report}"
        assert any(subject in line for line in failing), f"{rule}: {subject} not named:\n{report}"
    # the coverage counts the models without a description (21 + raw_peek + stg_adhoc__peek)
    assert "documentation: models 20/23 (87%)" in report, report


def test_an_exposure_of_no_model_fails(project: Path) -> None:
    """dbt itself refuses a ref to a model that does not exist; a dashboard exposure that
    depends on no model at all is dbt-bouncer's to refuse."""
    edit(
        project / "models" / "exposures.yml",
        "exposures:\n",
        "exposures:\n  - name: empty_dashboard\n    type: dashboard\n"
        "    owner: {name: nobody}\n    description: Reads nothing.\n    depends_on: []\n",
    )
    passed, report = check_target(project, "postgres")
    assert not passed
    assert any(
        "check_exposure_based_on_model" in line and "empty_dashboard" in line
        for line in report.splitlines()
    ), report
    edit(
        project / "models" / "exposures.yml",
        "    depends_on: []\n",
        "    depends_on: [ref('nope')]\n",
    )
    passed, report = check_target(project, "postgres")
    assert not passed
    assert "`dbt parse` failed" in report and "nope" in report, report
