"""Checks of a LookML project against the dbt project and the built marts.

``problems(...)`` returns one line per broken rule, each starting with the rule's name, so
that a test (or a person) sees what is wrong and where:

- ``lkml-parse``: every ``.lkml`` file parses with lkml, every ``.dashboard.lookml`` file
  is YAML;
- ``view-table``: every view reads a table that exists in the built marts;
- ``field-column``: every dimension names a column of that table, with a compatible type
  (LookML ``number`` for a numeric column, ``string`` for text, ``time`` for a timestamp);
- ``field-reference``: measures, explores, joins and dashboard tiles name fields and views
  that exist;
- ``primary-key``: every view has exactly one primary key;
- ``exposure-view``: every model a dashboard exposure lists has a view.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import lkml
import yaml  # type: ignore[import-untyped,unused-ignore]  # PyYAML comes with dbt-core

from antenna_elt.devstack.looker.dbt_project import Project, type_family
from antenna_elt.devstack.looker.lookml import TIMEFRAMES

TABLE_COLUMN = re.compile(r"\$\{TABLE\}\.([A-Za-z_][A-Za-z0-9_]*)")
FIELD_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_.]*)\}")
NUMERIC_MEASURES = ("sum", "average", "max", "min")


@dataclass
class View:
    name: str
    table: str
    dimensions: dict[str, dict[str, Any]] = field(default_factory=dict)
    groups: dict[str, dict[str, Any]] = field(default_factory=dict)
    measures: dict[str, dict[str, Any]] = field(default_factory=dict)

    def field_names(self) -> set[str]:
        names = set(self.dimensions) | set(self.measures)
        for name, group in self.groups.items():
            names.update(f"{name}_{tf}" for tf in group.get("timeframes", TIMEFRAMES))
        return names


def load_views(looker_dir: Path, problems: list[str]) -> dict[str, View]:
    views: dict[str, View] = {}
    for path in sorted((looker_dir / "views").glob("*.view.lkml")):
        try:
            parsed = lkml.load(path.read_text())
        except Exception as exc:  # lkml raises SyntaxError and friends
            problems.append(f"lkml-parse: {path.name}: {exc}")
            continue
        for raw in parsed.get("views", []):
            if not raw.get("name"):
                problems.append(f"lkml-parse: {path.name}: a view without a name")
                continue
            table = raw.get("sql_table_name", "").split(".")[-1].strip()
            view = View(raw["name"], table)
            view.dimensions = {d["name"]: d for d in raw.get("dimensions", [])}
            view.groups = {g["name"]: g for g in raw.get("dimension_groups", [])}
            view.measures = {m["name"]: m for m in raw.get("measures", [])}
            views[view.name] = view
    return views


def _check_view(view: View, columns: dict[str, str] | None, problems: list[str]) -> None:
    if columns is None:
        problems.append(f"view-table: view {view.name} reads {view.table}, not a built mart")
        return
    keys = [d for d in view.dimensions.values() if d.get("primary_key") == "yes"]
    if len(keys) != 1:
        problems.append(f"primary-key: view {view.name} has {len(keys)} primary keys")
    for kind, fields in (("dimension", view.dimensions), ("dimension_group", view.groups)):
        for name, spec in fields.items():
            referenced = TABLE_COLUMN.findall(spec.get("sql", ""))
            if not referenced:
                problems.append(f"field-column: {view.name}.{name} names no ${{TABLE}} column")
            for column in referenced:
                if column not in columns:
                    problems.append(
                        f"field-column: {view.name}.{name} names column {column}, which "
                        f"{view.table} does not have"
                    )
                    continue
                if spec.get("primary_key") == "yes" and spec.get("hidden") == "yes":
                    continue  # the key's CONCAT of any columns is a string
                family = type_family(columns[column])
                wanted = {"dimension_group": ("time", "instant")}.get(kind) or (
                    spec.get("type", "string"),
                )
                if family not in wanted:
                    problems.append(
                        f"field-column: {view.name}.{name} is a LookML "
                        f"{spec.get('type', kind)}, but column {column} is {columns[column]}"
                    )
    for name, spec in view.measures.items():
        for ref in FIELD_REF.findall(spec.get("sql", "")):
            if ref not in view.dimensions:
                problems.append(f"field-reference: measure {view.name}.{name} uses ${{{ref}}}")
            elif (
                spec.get("type") in NUMERIC_MEASURES
                and view.dimensions[ref].get("type") != "number"
            ):
                problems.append(
                    f"field-reference: measure {view.name}.{name} ({spec['type']}) of a "
                    f"{view.dimensions[ref].get('type')} dimension"
                )


def _check_model_file(looker_dir: Path, views: dict[str, View], problems: list[str]) -> set[str]:
    explores: set[str] = set()
    for path in sorted(looker_dir.glob("*.model.lkml")):
        try:
            parsed = lkml.load(path.read_text())
        except Exception as exc:
            problems.append(f"lkml-parse: {path.name}: {exc}")
            continue
        for explore in parsed.get("explores", []):
            name = explore["name"]
            explores.add(name)
            if name not in views:
                problems.append(f"field-reference: explore {name} has no view")
            for join in explore.get("joins", []):
                if join["name"] not in views:
                    problems.append(f"field-reference: explore {name} joins unknown {join['name']}")
                for ref in FIELD_REF.findall(join.get("sql_on", "")):
                    view_name, _, field_name = ref.partition(".")
                    if view_name not in views or field_name not in views[view_name].field_names():
                        problems.append(f"field-reference: join {name}/{join['name']} uses {ref}")
    return explores


def _check_dashboards(
    looker_dir: Path, views: dict[str, View], explores: set[str], problems: list[str]
) -> None:
    for path in sorted((looker_dir / "dashboards").glob("*.dashboard.lookml")):
        try:
            documents = yaml.safe_load(path.read_text())
        except yaml.YAMLError as exc:
            problems.append(f"lkml-parse: {path.name} is not YAML: {exc}")
            continue
        for dashboard in documents:
            for element in dashboard.get("elements", []):
                where = f"{path.name}: tile {element.get('title')!r}"
                explore = element.get("explore")
                if explore not in explores:
                    problems.append(f"field-reference: {where} uses unknown explore {explore}")
                    continue
                fields = element.get("fields", [])
                used = [
                    *fields,
                    *element.get("pivots", []),
                    *(s.split()[0] for s in element.get("sorts", [])),
                    *element.get("filters", {}),
                ]
                for ref in used:
                    view_name, _, field_name = ref.partition(".")
                    view = views.get(view_name)
                    if view is None or field_name not in view.field_names():
                        problems.append(f"field-reference: {where} uses unknown field {ref}")
                for ref in element.get("pivots", []):
                    if ref not in fields:
                        problems.append(f"field-reference: {where} pivots on {ref}, not a field")


def problems(
    looker_dir: Path, built_columns: dict[str, dict[str, str]], project: Project
) -> list[str]:
    """Every broken rule, one line each. ``built_columns``: table -> column -> type of the
    built marts schema."""
    found: list[str] = []
    manifest = looker_dir / "manifest.lkml"
    try:
        lkml.load(manifest.read_text())
    except Exception as exc:
        found.append(f"lkml-parse: {manifest.name}: {exc}")
    views = load_views(looker_dir, found)
    for view in views.values():
        _check_view(view, built_columns.get(view.table), found)
    explores = _check_model_file(looker_dir, views, found)
    _check_dashboards(looker_dir, views, explores, found)
    for dashboard in project.dashboards:
        for model in dashboard.models:
            if model not in views:
                found.append(f"exposure-view: exposure {dashboard.name} lists {model}, no view")
    return found
