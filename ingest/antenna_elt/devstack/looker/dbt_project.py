"""What the LookML generator takes from the dbt project: read from dbt's manifest."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from antenna_elt.dbt import profiles_dir
from antenna_elt.errors import UserError
from antenna_elt.settings import PROJECT_ROOT

# Looker reads the serving database: the models enabled there are the ones it can query
TARGET = "postgres"

# declared dbt data types (dbt's aliases and the engines' own names) -> LookML field type
TYPE_FAMILIES: dict[str, tuple[str, ...]] = {
    "string": ("string", "text", "varchar", "character varying", "char", "character"),
    "number": (
        "bigint",
        "int8",
        "int64",
        "integer",
        "int",
        "int4",
        "smallint",
        "hugeint",
        "double",
        "double precision",
        "float",
        "float4",
        "float8",
        "float64",
        "real",
        "numeric",
        "decimal",
    ),
    "yesno": ("boolean", "bool"),
    "time": ("timestamp", "timestamp without time zone", "datetime"),
    "instant": ("timestamptz", "timestamp with time zone", "timestamp_tz"),
}

MEASURE_TYPES = ("sum", "max", "min", "average", "count_distinct")


def type_family(data_type: str) -> str | None:
    """The family (string, number, yesno, time, instant) of a declared or built type."""
    base = re.sub(r"\(.*\)$", "", data_type.strip().lower()).strip()
    for family, names in TYPE_FAMILIES.items():
        if base in names:
            return family
    return None


@dataclass(frozen=True)
class Measure:
    type: str
    column: str
    label: str | None = None
    value_format_name: str | None = None

    @property
    def name(self) -> str:
        return f"{self.type}_{self.column}"


@dataclass(frozen=True)
class Column:
    name: str
    description: str
    data_type: str
    family: str


@dataclass(frozen=True)
class Join:
    column: str
    """column of this model"""
    to_model: str
    to_column: str


@dataclass(frozen=True)
class Model:
    name: str
    description: str
    relation: str
    """the table's name in the marts schema (the model's alias)"""
    columns: tuple[Column, ...]
    key: tuple[str, ...]
    """columns of the uniqueness test: one column, or a combination"""
    measures: tuple[Measure, ...]
    joins: tuple[Join, ...]

    def column(self, name: str) -> Column:
        return next(c for c in self.columns if c.name == name)


@dataclass(frozen=True)
class Dashboard:
    """A dashboard exposure: its name and the models it lists."""

    name: str
    label: str
    models: tuple[str, ...]


@dataclass(frozen=True)
class Project:
    models: dict[str, Model]
    dashboards: tuple[Dashboard, ...]


def parse_manifest(project_dir: Path = PROJECT_ROOT, target: str = TARGET) -> dict[str, Any]:
    """`dbt parse` (no database connection) into a temporary target path; the manifest."""
    dbt = Path(sys.executable).with_name("dbt")
    with tempfile.TemporaryDirectory(prefix="looker-parse-") as tmp:
        env = {**os.environ, "DBT_PROFILES_DIR": str(profiles_dir())}
        proc = subprocess.run(
            [
                str(dbt),
                "parse",
                "--target",
                target,
                "--project-dir",
                str(project_dir),
                "--target-path",
                tmp,
                "--log-path",
                tmp,
                "--no-partial-parse",
                "--quiet",
            ],
            cwd=project_dir,
            env=env,
            capture_output=True,
            text=True,
        )
        if proc.returncode != 0:
            raise UserError(
                f"`dbt parse --target {target}` failed; fix the dbt project first:\n"
                f"{(proc.stdout + proc.stderr).strip()[-3000:]}"
            )
        manifest: dict[str, Any] = json.loads((Path(tmp) / "manifest.json").read_text())
        return manifest


def _ref_name(expression: str) -> str | None:
    match = re.search(r"ref\(\s*['\"]([A-Za-z0-9_]+)['\"]\s*\)", expression)
    return match.group(1) if match else None


def _unquote(column: str) -> str:
    return column.strip().strip('"').strip("`")


def _tests_by_model(manifest: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    tests: dict[str, list[dict[str, Any]]] = {}
    for node in manifest["nodes"].values():
        if node["resource_type"] == "test" and node.get("attached_node"):
            tests.setdefault(node["attached_node"], []).append(node)
    return tests


def _key(model_node: dict[str, Any], tests: list[dict[str, Any]]) -> tuple[str, ...]:
    """The model's key: its first single-column `unique` test (in column order), else its
    `unique_combination_of_columns` test."""
    single = {
        _unquote(t["test_metadata"]["kwargs"]["column_name"])
        for t in tests
        if (t.get("test_metadata") or {}).get("name") == "unique"
    }
    for column in model_node["columns"]:
        if column in single:
            return (column,)
    for t in tests:
        meta = t.get("test_metadata") or {}
        if meta.get("name") == "unique_combination_of_columns":
            return tuple(_unquote(c) for c in meta["kwargs"]["combination_of_columns"])
    return ()


def _joins(tests: list[dict[str, Any]]) -> tuple[Join, ...]:
    joins = []
    for t in tests:
        meta = t.get("test_metadata") or {}
        if meta.get("name") != "relationships":
            continue
        kwargs = meta["kwargs"]
        to_model = _ref_name(kwargs.get("to", ""))
        if to_model:
            joins.append(Join(_unquote(kwargs["column_name"]), to_model, kwargs["field"]))
    return tuple(sorted(joins, key=lambda j: (j.to_model, j.column)))


def _measures(model: str, column: str, meta: dict[str, Any]) -> list[Measure]:
    measures = []
    for spec in (meta.get("looker") or {}).get("measures") or []:
        if spec.get("type") not in MEASURE_TYPES:
            raise UserError(
                f"{model}.{column}: config.meta.looker.measures type {spec.get('type')!r} is "
                f"not one of {', '.join(MEASURE_TYPES)}"
            )
        measures.append(
            Measure(spec["type"], column, spec.get("label"), spec.get("value_format_name"))
        )
    return measures


def _model(node: dict[str, Any], tests: list[dict[str, Any]]) -> Model:
    name = node["name"]
    columns, measures = [], []
    for column in node["columns"].values():
        data_type = column.get("data_type") or ""
        family = type_family(data_type)
        if family is None:
            raise UserError(
                f"{name}.{column['name']}: declare a data_type (string, bigint, double, "
                f"timestamp, boolean, ...) in its YAML; Looker's field type comes from it"
                + (f" (got {data_type!r})" if data_type else "")
            )
        if not (column.get("description") or "").strip():
            raise UserError(f"{name}.{column['name']}: the column has no description")
        columns.append(Column(column["name"], column["description"].strip(), data_type, family))
        meta = (column.get("config") or {}).get("meta") or column.get("meta") or {}
        measures.extend(_measures(name, column["name"], meta))
    key = _key(node, tests)
    if not key:
        raise UserError(f"{name}: no uniqueness test, so no primary key for its Looker view")
    return Model(
        name=name,
        description=" ".join(node["description"].split()),
        relation=node.get("alias") or name,
        columns=tuple(columns),
        key=key,
        measures=tuple(measures),
        joins=_joins(tests),
    )


def load_project(manifest: dict[str, Any]) -> Project:
    """The models the dashboard exposures list, and the models their relationships join to."""
    nodes = manifest["nodes"]
    tests = _tests_by_model(manifest)
    dashboards = []
    wanted: list[str] = []
    for exposure in sorted(manifest["exposures"].values(), key=lambda e: e["name"]):
        if exposure["type"] != "dashboard":
            continue
        listed = tuple(
            nodes[uid]["name"] for uid in exposure["depends_on"]["nodes"] if uid in nodes
        )
        dashboards.append(Dashboard(exposure["name"], exposure.get("label") or "", listed))
        wanted.extend(m for m in listed if m not in wanted)
    by_name = {n["name"]: (uid, n) for uid, n in nodes.items() if n["resource_type"] == "model"}
    models: dict[str, Model] = {}
    queue = list(wanted)
    while queue:
        name = queue.pop(0)
        if name in models:
            continue
        uid, node = by_name[name]
        model = _model(node, tests.get(uid, []))
        models[name] = model
        queue.extend(j.to_model for j in model.joins if j.to_model not in models)
    return Project(dict(sorted(models.items())), tuple(dashboards))
