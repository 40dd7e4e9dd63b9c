"""One dbt command of a cycle, run as a child process, and what it reports.

Each target gets a target path of its own under the runner's home, so that dbt's partial
parsing holds from one cycle to the next and the two warehouses never overwrite each
other's artefacts. The outcome comes from dbt's run_results.json: seconds, rows affected,
and every failed test or model with its failing rows (sources.json for freshness).
"""

from __future__ import annotations

import contextlib
import json
import logging
import signal
import subprocess
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from antenna_elt.clock import SYSTEM_CLOCK, Clock
from antenna_elt.dbt import profiles_dir
from antenna_elt.run.dbt_worker import DONE
from antenna_elt.settings import PROJECT_ROOT, process_environment

log = logging.getLogger("antenna_elt.run")


@dataclass
class Problem:
    node: str
    """dbt's unique id (``test.antenna_elt.assert_bytes_equals_staged_events``)."""
    status: str
    """fail, error, warn, runtime error, ..."""
    failures: int | None
    message: str


@dataclass
class StepResult:
    command: str
    exit_code: int
    seconds: float
    rows_affected: int | None = None
    """Rows the models wrote, where the adapter reports it (PostgreSQL does, DuckDB not)."""
    models: int = 0
    tests: int = 0
    problems: list[Problem] = field(default_factory=list)
    output_tail: str = ""

    @property
    def ok(self) -> bool:
        return self.exit_code == 0 and not self.failures

    @property
    def tests_failed(self) -> int:
        return sum(1 for p in self.failures if p.node.startswith(("test.", "unit_test.")))

    @property
    def failures(self) -> list[Problem]:
        """Problems that fail the step (a test at severity warn only warns)."""
        return [p for p in self.problems if p.status != "warn"]

    @property
    def warnings(self) -> list[Problem]:
        return [p for p in self.problems if p.status == "warn"]


def summarize(
    command: str, exit_code: int, seconds: float, artefacts: Path, tail: str
) -> StepResult:
    """A step's outcome from its run_results.json (or sources.json for freshness)."""
    result = StepResult(command, exit_code, seconds, output_tail=tail)
    runs = _read_json(artefacts / "run_results.json") if command != "freshness" else None
    if runs is not None:
        for item in runs.get("results", []):
            node = str(item.get("unique_id", ""))
            status = str(item.get("status", ""))
            response = item.get("adapter_response") or {}
            if node.startswith("model."):
                result.models += 1
                if response.get("rows_affected") is not None:
                    result.rows_affected = (result.rows_affected or 0) + int(
                        response["rows_affected"]
                    )
            elif node.startswith(("test.", "unit_test.")):
                result.tests += 1
            if status not in ("success", "pass", "skipped", "no-op"):
                failures = item.get("failures")
                result.problems.append(
                    Problem(
                        node,
                        status,
                        None if failures is None else int(failures),
                        str(item.get("message") or ""),
                    )
                )
    sources = _read_json(artefacts / "sources.json") if command == "freshness" else None
    if sources is not None:
        for item in sources.get("results", []):
            status = str(item.get("status", ""))
            if status not in ("pass",):
                age = item.get("max_loaded_at_time_ago_in_s")
                text = (
                    f"newest row {age:.0f} s old"
                    if isinstance(age, int | float)
                    else str(item.get("error") or status)
                )
                result.problems.append(Problem(str(item.get("unique_id", "")), status, None, text))
    return result


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        return dict(json.loads(path.read_text()))
    except (OSError, ValueError):
        return None


class DbtStep:
    """``dbt <args>`` on one target as a child process; :meth:`stop` interrupts it.

    ``persistent``: the commands run in one long-lived dbt process
    (:mod:`antenna_elt.run.dbt_worker`) that imports dbt and parses the project once, not
    in a new process each time; a worker that dies (killed, out of memory) is replaced at
    the next command."""

    def __init__(self, home: Path, target: str, raw_schema: str, *, name: str | None = None,
                 env: dict[str, str] | None = None, clock: Clock = SYSTEM_CLOCK,
                 persistent: bool = False, project: Path = PROJECT_ROOT):  # fmt: skip
        self.persistent = persistent
        self.project = project
        self.target = target
        self.name = name or target
        self.artefacts = home / f"dbt-target-{self.name}"
        self.log_file = home / f"dbt-{self.name}.log"
        self.raw_schema = raw_schema
        self.env = env or {}
        self.clock = clock
        self._lock = threading.Lock()
        self._process: subprocess.Popen[str] | None = None

    def run(self, command: str, *args: str, test_scope: str | None = None) -> StepResult:
        """``build`` or ``freshness`` (``dbt source freshness``), with ``args``."""
        dbt = str(Path(sys.executable).with_name("dbt"))
        words = ["source", "freshness"] if command == "freshness" else [command]
        variables: dict[str, str] = {"raw_schema": self.raw_schema}
        if test_scope:
            variables["ingest_test_scope"] = test_scope
        argv = [dbt, *words, "--target", self.target, "--target-path", str(self.artefacts),
                "--vars", json.dumps(variables), *args]  # fmt: skip
        env = {**process_environment(), "DBT_PROFILES_DIR": str(profiles_dir()), **self.env}
        self.artefacts.mkdir(parents=True, exist_ok=True)
        for stale in ("run_results.json", "sources.json"):
            (self.artefacts / stale).unlink(missing_ok=True)
        started = self.clock.monotonic()
        if self.persistent:
            exit_code, output = self._run_in_worker(argv[1:], env)
        else:
            with self._lock:
                self._process = subprocess.Popen(
                    argv, cwd=self.project, env=env, stdout=subprocess.PIPE,
                    stderr=subprocess.STDOUT, text=True,
                )  # fmt: skip
                process = self._process
            output, _ = process.communicate()
            exit_code = process.returncode
            with self._lock:
                self._process = None
        with self.log_file.open("a") as out:
            out.write(output)
        seconds = self.clock.monotonic() - started
        return summarize(command, exit_code, seconds, self.artefacts, output[-2000:])

    def _run_in_worker(self, args: list[str], env: dict[str, str]) -> tuple[int, str]:
        """One command in the worker (started when there is none): its exit code and output.
        A worker that dies meanwhile gives its own exit code (-9 when killed)."""
        with self._lock:
            if self._process is not None and self._process.poll() is not None:
                log.warning("the %s dbt worker died between commands (exit code %s); starting another",
                            self.name, self._process.returncode)  # fmt: skip
            if self._process is None or self._process.poll() is not None:
                self._process = subprocess.Popen(
                    [sys.executable, "-m", "antenna_elt.run.dbt_worker", str(self.artefacts)],
                    cwd=self.project, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                    stderr=subprocess.STDOUT, text=True,
                )  # fmt: skip
            process = self._process
        assert process.stdin is not None and process.stdout is not None
        lines: list[str] = []
        try:
            process.stdin.write(json.dumps(args) + "\n")
            process.stdin.flush()
            for line in process.stdout:
                if line.startswith(DONE):
                    return int(json.loads(line[len(DONE) :])["exit_code"]), "".join(lines)
                lines.append(line)
        except (BrokenPipeError, ValueError, OSError):
            pass  # the worker is gone: its exit code below
        code = process.wait()
        with self._lock:
            if self._process is process:
                self._process = None
        return code if code != 0 else 2, "".join(lines)

    def stop(self) -> None:
        """Interrupt a running step (dbt stops at once on SIGINT and rolls back)."""
        with self._lock:
            if self._process is not None and self._process.poll() is None:
                self._process.send_signal(signal.SIGINT)

    def close(self) -> None:
        """End the persistent worker, if any (it finishes the command it is running)."""
        with self._lock:
            process, self._process = self._process, None
        if process is None or not self.persistent:
            return
        if process.stdin is not None:
            with contextlib.suppress(OSError):
                process.stdin.close()
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
