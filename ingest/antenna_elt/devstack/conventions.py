"""``antenna-elt conventions``: the team's dbt conventions, checked on dbt's manifest.

The rules live in ``dbt-bouncer.yml`` (dbt-bouncer, a maintained checker of dbt artifacts);
this runs them where they differ: on the manifest of each target that enables different
models (``postgres``: rejects staged; ``duckdb``: the lake's closed hours), from ``dbt
parse``, so no database is needed. Given a target's artifacts with a ``catalog.json``
(``--artifacts duckdb=DIR`` after ``dbt docs generate``), the catalog checks run too. Test
and documentation coverage are printed from the same manifest. Exit 1 when a rule is broken.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml  # type: ignore[import-untyped,unused-ignore]  # PyYAML comes with dbt-core

from antenna_elt.dbt import profiles_dir
from antenna_elt.settings import PROJECT_ROOT

CONFIG = "dbt-bouncer.yml"
TARGETS = ("postgres", "duckdb")


@dataclass(frozen=True)
class Coverage:
    models: int
    models_described: int
    models_tested: int
    columns: int
    columns_described: int

    def lines(self) -> list[str]:
        def pct(part: int, whole: int) -> str:
            return f"{part}/{whole} ({100 * part / whole:.0f}%)" if whole else "0/0"

        return [
            f"  documentation: models {pct(self.models_described, self.models)}, "
            f"columns {pct(self.columns_described, self.columns)}",
            f"  tests: models with at least one test {pct(self.models_tested, self.models)}",
        ]


def coverage(manifest: dict[str, Any], catalog: dict[str, Any] | None = None) -> Coverage:
    """Models described and tested; columns described (with a catalog: every built column,
    declared or not; without: the columns the YAML declares)."""
    models = {
        uid: node
        for uid, node in manifest["nodes"].items()
        if node["resource_type"] == "model" and node["package_name"] == "antenna_elt"
    }
    tested = {
        parent
        for node in [*manifest["nodes"].values(), *manifest.get("unit_tests", {}).values()]
        if node["resource_type"] in ("test", "unit_test")
        for parent in node["depends_on"]["nodes"]
    }
    columns = described = 0
    for uid, node in models.items():
        declared = {name.lower(): c for name, c in node["columns"].items()}
        built = ((catalog or {}).get("nodes", {}).get(uid) or {}).get("columns")
        names = [n.lower() for n in built] if built else list(declared)
        columns += len(names)
        described += sum(1 for n in names if (declared.get(n) or {}).get("description"))
    return Coverage(
        models=len(models),
        models_described=sum(1 for n in models.values() if n["description"].strip()),
        models_tested=len(set(models) & tested),
        columns=columns,
        columns_described=described,
    )


def parse(project_dir: Path, target: str, artifacts: Path) -> subprocess.CompletedProcess[str]:
    dbt = Path(sys.executable).with_name("dbt")
    return subprocess.run(
        [
            str(dbt),
            "parse",
            "--target",
            target,
            "--project-dir",
            str(project_dir),
            "--target-path",
            str(artifacts),
            "--log-path",
            str(artifacts),
            "--no-partial-parse",
            "--quiet",
        ],
        cwd=project_dir,
        env={**os.environ, "DBT_PROFILES_DIR": str(profiles_dir())},
        capture_output=True,
        text=True,
    )


def bounce(
    project_dir: Path, artifacts: Path, with_catalog: bool
) -> subprocess.CompletedProcess[str]:
    """dbt-bouncer with the project's rules, pointed at ``artifacts``."""
    config = yaml.safe_load((project_dir / CONFIG).read_text())
    config["dbt_artifacts_dir"] = str(artifacts)
    if not with_catalog:
        config.pop("catalog_checks", None)
    config_file = artifacts / "dbt-bouncer.yml"
    config_file.write_text(yaml.safe_dump(config, sort_keys=False))
    return subprocess.run(
        [
            str(Path(sys.executable).with_name("dbt-bouncer")),
            "run",
            "--config-file",
            str(config_file),
            "--show-all-failures",
        ],
        cwd=project_dir,
        capture_output=True,
        text=True,
        env={**os.environ, "NO_COLOR": "1", "COLUMNS": "200"},
    )


def check_target(project_dir: Path, target: str, artifacts: Path | None = None) -> tuple[bool, str]:
    """(passed, report) for one target: parse unless ``artifacts`` are given, run the rules,
    add the coverage."""
    with tempfile.TemporaryDirectory(prefix=f"conventions-{target}-") as tmp:
        work = Path(tmp)
        if artifacts is None:
            parsed = parse(project_dir, target, work)
            if parsed.returncode != 0:
                out = (parsed.stdout + parsed.stderr).strip()[-3000:]
                return False, f"conventions ({target}): `dbt parse` failed:\n{out}"
            source = work
        else:
            source = artifacts
            for name in ("manifest.json", "catalog.json"):
                if (artifacts / name).exists():
                    (work / name).write_bytes((artifacts / name).read_bytes())
        catalog_file = work / "catalog.json"
        with_catalog = catalog_file.exists()
        result = bounce(project_dir, work, with_catalog)
        manifest = json.loads((source / "manifest.json").read_text())
        catalog = json.loads(catalog_file.read_text()) if with_catalog else None
        passed = result.returncode == 0
        checks = "manifest and catalog" if with_catalog else "manifest"
        lines = [
            f"conventions ({target}, {checks} checks of {CONFIG}): "
            + ("every rule holds" if passed else "RULES BROKEN")
        ]
        if not passed:
            lines.append((result.stdout + result.stderr).strip())
        lines.extend(coverage(manifest, catalog).lines())
        return passed, "\n".join(lines)


def check(
    project_dir: Path = PROJECT_ROOT,
    targets: list[str] | None = None,
    artifacts: dict[str, Path] | None = None,
) -> int:
    """Check every target (or the given ones); print each report; exit status."""
    failed = 0
    for target in targets or TARGETS:
        passed, report = check_target(project_dir, target, (artifacts or {}).get(target))
        print(report, flush=True)
        failed += not passed
    return 1 if failed else 0
