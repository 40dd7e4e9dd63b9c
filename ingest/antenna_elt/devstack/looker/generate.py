"""(Re)generate looker/ from the dbt project: ``antenna-elt looker [--check]``.

`make looker` runs it. With ``--check`` nothing is written: it exits 1 and names the files
that differ from what the dbt project generates (the LookML has drifted).
"""

from __future__ import annotations

import sys
from pathlib import Path

from antenna_elt.devstack.looker.dashboards import DASHBOARDS, dashboard_file
from antenna_elt.devstack.looker.dbt_project import Project, load_project, parse_manifest
from antenna_elt.devstack.looker.lookml import HEADER, MODEL_NAME, manifest_file, model_file, view
from antenna_elt.settings import PROJECT_ROOT

DEFAULT_OUT = PROJECT_ROOT / "looker"


def render(project: Project) -> dict[str, str]:
    """Relative path -> content of every file of the LookML project."""
    files = {
        "manifest.lkml": manifest_file(),
        f"{MODEL_NAME}.model.lkml": model_file(project),
    }
    for model in project.models.values():
        files[f"views/{model.name}.view.lkml"] = view(model)
    for dashboard in DASHBOARDS:
        files[f"dashboards/{dashboard.name}.dashboard.lookml"] = dashboard_file(dashboard, HEADER)
    return files


def differences(files: dict[str, str], out: Path) -> list[str]:
    """Files missing, changed or left over in ``out`` compared with ``files``."""
    found = [
        rel
        for rel, text in files.items()
        if not (out / rel).exists() or (out / rel).read_text() != text
    ]
    existing = {
        p.relative_to(out).as_posix()
        for p in out.rglob("*")
        if p.is_file() and p.name.endswith((".lkml", ".lookml"))
    }
    found.extend(sorted(existing - set(files)))
    return sorted(found)


def write(files: dict[str, str], out: Path) -> list[str]:
    changed = differences(files, out)
    for rel in changed:
        path = out / rel
        if rel in files:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(files[rel])
        else:
            path.unlink()
    return changed


def generate(project_dir: Path = PROJECT_ROOT, out: Path | None = None, check: bool = False) -> int:
    """Write the LookML project (or, with ``check``, only compare it); exit status."""
    out = out or project_dir / "looker"
    files = render(load_project(parse_manifest(project_dir)))
    if check:
        drift = differences(files, out)
        if drift:
            print(
                f"antenna-elt looker: {out} differs from what the dbt project generates: "
                f"{', '.join(drift)}; run `make looker` and commit the result",
                file=sys.stderr,
            )
            return 1
        print(f"looker: {out} is up to date ({len(files)} files)")
        return 0
    changed = write(files, out)
    print(f"looker: {len(files)} files in {out}, {len(changed)} changed")
    return 0
