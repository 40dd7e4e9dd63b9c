"""`antenna-elt stack`: idempotent, says what runs, names a missing prerequisite."""

from __future__ import annotations

import os
import re
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from conftest import run_cli

from antenna_elt.devstack import stack
from antenna_elt.settings import Settings


def test_second_up_is_a_no_op_that_says_so(settings: Settings) -> None:
    first = run_cli("stack", "up")
    second = run_cli("stack", "up")
    assert first.returncode == second.returncode == 0, first.stderr + second.stderr
    assert re.search(
        r"^postgres: already running \(pid \d+, 127\.0\.0\.1:\d+\)$", second.stdout, re.M
    )
    assert re.search(r"^kafka: already running \(pid \d+, 127\.0\.0\.1:\d+\)$", second.stdout, re.M)
    pids = lambda text: re.findall(r"pid (\d+)", text)  # noqa: E731
    assert pids(first.stdout) == pids(second.stdout)


def test_ups_at_once_each_end_with_the_stack_up(settings: Settings) -> None:
    """Several `stack up`s at once (two terminals, `make demo` beside `make run`, two test
    workers), started together: each waits for the others and finds the stack up. Before,
    two of them set up the roles at the same moment and one died of PostgreSQL's `tuple
    concurrently updated`."""
    together = threading.Barrier(8)

    def up(_: int) -> list[str]:
        together.wait()
        return stack.ensure_up(settings)

    for _ in range(3):
        with ThreadPoolExecutor(8) as pool:
            for lines in pool.map(up, range(8)):
                assert [line.split(" (")[0] for line in lines] == [
                    "postgres: already running",
                    "kafka: already running",
                ]


def test_status_lists_both_components_running(settings: Settings) -> None:
    proc = run_cli("stack", "status")
    assert proc.returncode == 0
    lines = proc.stdout.strip().splitlines()
    assert [line.split(":")[0] for line in lines] == ["kafka", "postgres"]
    assert all(": running (pid " in line for line in lines), proc.stdout


def test_missing_java_is_one_line_naming_the_package(tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    env = {
        "PATH": str(bin_dir),  # no java, no mvn
        "HOME": str(tmp_path),
        "ANTENNA_ELT_HOME": str(tmp_path / "stack"),
        "ANTENNA_ELT_KAFKA_PORT": "29992",
        "ANTENNA_ELT_PG_PORT": "29932",
    }
    proc = run_cli("stack", "up", env=env)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "antenna-elt: error: `java` not found on PATH: install it with `apt-get install -y openjdk-17-jre-headless`"
    ]
    assert not (tmp_path / "stack" / "postgres").exists(), "nothing is started before the check"


def test_every_subcommand_has_help() -> None:
    for args in (["--help"], ["stack", "--help"], ["stack", "up", "--help"], ["simulate", "--help"],
                 ["ingest", "--help"], ["ingest", "postgres", "--help"], ["report", "--help"]):  # fmt: skip
        proc = run_cli(*args, env={**os.environ, "PATH": os.path.dirname(sys.executable)})
        assert proc.returncode == 0 and proc.stdout.startswith("usage: antenna-elt"), (
            args,
            proc.stderr,
        )
