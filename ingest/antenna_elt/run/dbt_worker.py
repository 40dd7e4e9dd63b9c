"""A dbt process that stays up between the runner's speed cycles.

A new ``dbt build`` process spends seconds before its first node: importing dbt and the
adapter (~3 s on 2 cores) and checking the project for changes (partial parsing, ~3 s
more), every cycle. This worker pays that once: it parses the project, keeps the manifest,
and runs each requested command in-process with dbt's programmatic entry point
(``dbtRunner(manifest=...)``). Before each command it takes a fingerprint of the project's
files (their paths, sizes and modification times: a stat of each, milliseconds) and parses
again when anything changed, so an analyst's edit is built by the next cycle as before.

Protocol (the runner's side is :class:`antenna_elt.run.dbt_steps.DbtStep`): one JSON list
of dbt arguments a line on stdin; dbt's output on stdout, then a line starting with
:data:`DONE` followed by the JSON ``{"exit_code": n}``. End of stdin ends the worker.
dbt's own exit codes are kept: 0 success, 1 a model or test failed, 2 an error.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

DONE = "\x1eantenna-elt-dbt-done "
"""Starts the line that ends a command's output (a record separator: dbt never prints it)."""

PROJECT_PATHS = ("models", "macros", "tests", "seeds", "snapshots", "analyses")
PROJECT_FILES = ("dbt_project.yml", "packages.yml", "dependencies.yml", "selectors.yml")


def fingerprint(project: Path, profiles: Path | None = None) -> tuple[tuple[str, int, int], ...]:
    """What the parsed manifest depends on, cheaply: every project file's path, size and
    modification time (and the profiles file's)."""
    entries: list[tuple[str, int, int]] = []

    def add(paths: Iterable[Path]) -> None:
        for path in paths:
            try:
                stat = path.stat()
            except OSError:
                continue
            entries.append((str(path), stat.st_size, stat.st_mtime_ns))

    for folder in PROJECT_PATHS:
        add(p for p in sorted((project / folder).rglob("*")) if p.is_file())
    add(project / name for name in PROJECT_FILES)
    if profiles is not None:
        add([profiles / "profiles.yml"])
    return tuple(entries)


def parse_arguments(args: list[str]) -> list[str]:
    """The options a parse needs from a command's arguments (target, vars, paths, profiles):
    the manifest depends on them, not on the selection."""
    keep = {"--target", "--target-path", "--vars", "--profiles-dir", "--project-dir"}
    out: list[str] = []
    for i, word in enumerate(args):
        if word in keep and i + 1 < len(args):
            out += [word, args[i + 1]]
    return out


class Worker:
    def __init__(self, project: Path, profiles: Path | None) -> None:
        from dbt.cli.main import dbtRunner

        self._runner_type = dbtRunner
        self.project = project
        self.profiles = profiles
        self._manifest: Any = None
        self._key: tuple[Any, ...] | None = None

    def run(self, args: list[str]) -> int:
        parse_args = parse_arguments(args)
        key = (tuple(parse_args), fingerprint(self.project, self.profiles))
        if self._manifest is None or key != self._key:
            parsed = self._runner_type().invoke(["parse", *parse_args])
            if not parsed.success or parsed.result is None:
                print(f"dbt parse failed: {parsed.exception or 'see above'}", flush=True)
                self._manifest = None
                return 2
            self._manifest, self._key = parsed.result, key
        result = self._runner_type(manifest=self._manifest).invoke(args)
        if result.exception is not None:
            print(f"dbt error: {result.exception}", flush=True)
            return 2
        return 0 if result.success else 1


def main() -> int:
    profiles = os.environ.get("DBT_PROFILES_DIR")
    worker = Worker(Path.cwd(), Path(profiles) if profiles else None)
    for line in sys.stdin:
        if not line.strip():
            continue
        try:
            code = worker.run([str(a) for a in json.loads(line)])
        except KeyboardInterrupt:
            print(DONE + json.dumps({"exit_code": 130}), flush=True)
            return 130
        except Exception as exc:  # a crash inside dbt: reported, the worker goes on
            print(f"dbt crashed: {type(exc).__name__}: {exc}", flush=True)
            code = 2
        sys.stdout.flush()
        print(DONE + json.dumps({"exit_code": code}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
