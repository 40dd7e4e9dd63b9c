"""The runner's loop: supervise the ingestors, run the speed and batch cycles, report."""

from __future__ import annotations

import contextlib
import ctypes
import logging
import signal
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

from antenna_elt.clock import SYSTEM_CLOCK, Clock
from antenna_elt.run.dbt_steps import DbtStep, StepResult
from antenna_elt.run.supervisor import Worker
from antenna_elt.run.watch import ClosedHours, Lag
from antenna_elt.settings import Settings

log = logging.getLogger("antenna_elt.run")

WAREHOUSES = ("duckdb", "bigquery", "none")
RAW_SOURCE = "raw"
"""The dbt source the ingestors land in: what a speed cycle builds is downstream of it."""


@dataclass
class RunOptions:
    speed_interval: float = 0.0
    """Seconds from the start of one speed cycle to the next (0: back to back)."""
    duration: float | None = None
    """Stop after this many seconds (a bounded run), then build once more."""
    warehouse: str = "duckdb"
    """The batch layer's dbt target: duckdb, bigquery (after `load bigquery`), or none."""
    postgres_group: str = "antenna-elt-postgres"
    lake_group: str = "antenna-elt-lake"
    alerts_topic: str = "quota-alerts"
    log_schema: str = "alerts"
    freshness: bool = True
    test_scope: str = "touched"
    """The data tests check what the builds touched (all history: ``all``)."""
    tests: str = "beside"
    """``beside``: the speed cycle builds without tests and a `dbt test` runs beside it, over
    everything built since its last run (the marts are published a build sooner: the
    latency is the build's alone); ``in-build``: each `dbt build` runs its own tests, and a
    failing test holds back the models below it."""
    test_interval: float = 60.0
    """With the tests beside: seconds from one test cycle's start to the next at the least.
    A test cycle checks every build since the last one, so fewer cycles test the same builds
    in less work (each rescans the hours the builds touched) and leave the cores to the
    builds: the marts' latency against how soon a wrong row is reported."""
    idle_rebuild_seconds: float = 60.0
    """With nothing ingested since the last build, build again only after this long."""
    batch_poll_seconds: float = 5.0
    work_dir: Path | None = None
    """Where the workers' and dbt's logs and artefacts go (default: <ANTENNA_ELT_HOME>/run)."""
    postgres_args: list[str] = field(default_factory=list)
    lake_args: list[str] = field(default_factory=list)


def _die_with_parent() -> None:  # pragma: no cover - runs in the child before exec
    """Workers stop with the runner, even when it is killed with SIGKILL."""
    with contextlib.suppress(OSError):  # not Linux: workers are still stopped on exit
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def spawn_worker(argv: Any, log_file: Path | None) -> Any:
    import subprocess

    assert log_file is not None
    log_file.parent.mkdir(parents=True, exist_ok=True)
    with log_file.open("ab") as out:
        return subprocess.Popen(
            list(argv), stdout=out, stderr=subprocess.STDOUT, preexec_fn=_die_with_parent
        )


def _problems_text(result: StepResult) -> str:
    failed = result.tests_failed
    errors = len(result.failures) - failed
    parts = []
    if result.models or not result.tests:
        parts.append(f"{result.models} models")
    if result.rows_affected is not None:
        parts.append(f"{result.rows_affected:,} rows")
    if result.tests or not result.models:  # a build without tests (they run beside) says so
        parts.append(f"{result.tests} tests, {failed} failed")
    text = ", ".join(parts)
    if result.warnings:
        text += f", {len(result.warnings)} warned"
    if errors:
        text += f", {errors} errors"
    if result.exit_code != 0 and not result.failures:
        text += f", dbt exit code {result.exit_code}"
    return text


class Runner:
    def __init__(self, settings: Settings, options: RunOptions, clock: Clock = SYSTEM_CLOCK):
        self.settings = settings
        self.options = options
        self.clock = clock
        self.home = options.work_dir or settings.home / "run"
        self._stop = threading.Event()
        cli = [sys.executable, "-m", "antenna_elt.cli"]
        topic = ["--topic", settings.topic]
        self.workers = [
            Worker(
                "ingest postgres",
                [
                    *cli,
                    "ingest",
                    "postgres",
                    *topic,
                    "--group",
                    options.postgres_group,
                    "--schema",
                    settings.raw_schema,
                    *options.postgres_args,
                ],
                self.home / "ingest-postgres.log",
                clock,
                spawn_worker,
            ),
        ]
        if options.warehouse != "none":
            self.workers.append(
                Worker(
                    "ingest lake",
                    [
                        *cli,
                        "ingest",
                        "lake",
                        *topic,
                        "--group",
                        options.lake_group,
                        "--lake",
                        settings.lake_uri,
                        *options.lake_args,
                    ],
                    self.home / "ingest-lake.log",
                    clock,
                    spawn_worker,
                )
            )
        libpq = settings.pg_child_env  # the local PostgreSQL's password file
        # the speed cycle's dbt stays up between cycles: no seconds of start-up and parsing
        # each time (what the event-to-mart latency is made of); the rarer steps start anew
        self.speed = DbtStep(
            self.home, "postgres", settings.raw_schema, clock=clock, env=libpq, persistent=True
        )
        # the speed marts' data tests beside the builds, in a dbt process of their own
        self.tests: DbtStep | None = None
        if options.tests == "beside":
            self.tests = DbtStep(self.home, "postgres", settings.raw_schema, name="tests-postgres",
                                 clock=clock, env=libpq, persistent=True)  # fmt: skip
        self.freshness = DbtStep(
            self.home, "postgres", settings.raw_schema, name="freshness", clock=clock, env=libpq
        )
        self.batch = (
            DbtStep(self.home, options.warehouse, settings.raw_schema, clock=clock, env=libpq)
            if options.warehouse != "none"
            else None
        )
        groups = {"postgres": options.postgres_group}
        if options.warehouse != "none":
            groups["lake"] = options.lake_group
        self.lag = Lag(settings.kafka_bootstrap_servers, settings.topic, groups)
        self.speed_cycles = 0
        self.test_cycles = 0
        self._built_cycles = 0
        """Speed cycles that ended (their builds are for the tests beside to check)."""
        self._tested_cycles = 0
        """Speed cycles that had ended when the last test cycle started."""
        self._built = threading.Condition()
        self._test_started = -1e9
        self.batch_cycles = 0
        self.failed_builds = 0
        self._freshness_thread: threading.Thread | None = None
        self._freshness_text = "freshness not checked yet"
        self._offsets_at_last_build: str | None = None
        self._built_project: tuple[Any, ...] | None = None
        """The project's files when a whole build (views and seeds too) last succeeded."""
        self._last_build = -1e9
        self._signalled = False

    # -- life cycle -------------------------------------------------------------------------

    def stop(self, *_: object) -> None:
        if not self._stop.is_set():
            log.info("stop requested: stopping the ingestors (they flush) and the builds")
        self._stop.set()
        for step in (self.speed, self.tests, self.freshness, self.batch):
            if step is not None:
                step.stop()
        with self._built:
            self._built.notify_all()

    def install_signal_handlers(self) -> None:
        def handler(signum: int, _frame: FrameType | None) -> None:
            self._signalled = True
            self.stop()

        signal.signal(signal.SIGINT, handler)
        signal.signal(signal.SIGTERM, handler)

    def run(self) -> int:
        started = self.clock.monotonic()
        log.info(
            "running: ingest %s into PostgreSQL%s; speed cycle %s, batch target %s; logs in %s",
            self.settings.topic,
            "" if self.batch is None else " and the lake",
            "back to back"
            if not self.options.speed_interval
            else f"every {self.options.speed_interval:g} s",
            self.options.warehouse,
            self.home,
        )
        for worker in self.workers:
            worker.start()
        batch_thread = None
        if self.batch is not None:
            batch_thread = threading.Thread(target=self._batch_loop, name="batch", daemon=True)
            batch_thread.start()
        test_thread = None
        if self.tests is not None:
            test_thread = threading.Thread(target=self._test_loop, name="tests", daemon=True)
            test_thread.start()
        try:
            while not self._stop.is_set():
                if self._expired(started):
                    log.info("ran for %.0f s (--for): stopping", self.clock.monotonic() - started)
                    break
                self._check_workers()
                cycle_started = self.clock.monotonic()
                if self._due():
                    self._speed_cycle()
                pause = max(
                    0.5, self.options.speed_interval - (self.clock.monotonic() - cycle_started)
                )
                self._wait(pause)
        finally:
            bounded = self.options.duration is not None and not self._signalled
            self._stop.set()
            for worker in self.workers:
                code = worker.stop()
                log.info("%s stopped (exit code %s)", worker.name, code)
            if batch_thread is not None:
                batch_thread.join(timeout=300)
            if test_thread is not None:
                test_thread.join(timeout=300)
            if self._freshness_thread is not None:
                self._freshness_thread.join(timeout=120)
        if bounded:
            # everything the ingestors flushed on their way out goes into the marts too
            self._speed_cycle(final=True)
            if self.tests is not None:
                self._test_cycle(final=True)
            if self.batch is not None:
                self._batch_cycle(list(self._closed_hours().changed()), final=True)
        self.speed.close()
        if self.tests is not None:
            self.tests.close()
        self.lag.close()
        log.info(
            "done: %d speed cycles, %d test cycles, %d batch cycles, %d builds or tests with "
            "failures, workers restarted %s",
            self.speed_cycles,
            self.test_cycles,
            self.batch_cycles,
            self.failed_builds,
            {w.name: w.restarts for w in self.workers},
        )
        return 0

    def _expired(self, started: float) -> bool:
        return (
            self.options.duration is not None
            and self.clock.monotonic() - started >= self.options.duration
        )

    def _wait(self, seconds: float) -> None:
        deadline = self.clock.monotonic() + seconds
        while not self._stop.is_set() and self.clock.monotonic() < deadline:
            self._check_workers()
            self.clock.wait(min(0.5, max(0.0, deadline - self.clock.monotonic())), self._stop)

    def _check_workers(self) -> None:
        if self._stop.is_set():
            return
        for worker in self.workers:
            worker.check()

    # -- the speed cycle --------------------------------------------------------------------

    def _due(self) -> bool:
        """Build when something was ingested since the last build (or now and then)."""
        offsets = self.lag.committed_text("postgres")
        if offsets is None or offsets != self._offsets_at_last_build:
            self._offsets_at_last_build = offsets
            return True
        return self.clock.monotonic() - self._last_build >= self.options.idle_rebuild_seconds

    def _project_state(self) -> tuple[Any, ...]:
        """What the views and seeds are built from: the dbt project's files and profile."""
        from antenna_elt.dbt import profiles_dir
        from antenna_elt.run.dbt_worker import fingerprint

        return fingerprint(self.speed.project, profiles_dir())

    def _speed_cycle(self, final: bool = False) -> None:
        from antenna_elt.alerts.quota import notify_once

        self.speed_cycles += 1
        self._last_build = self.clock.monotonic()
        self._start_freshness()
        exclude = ["resource_type:unit_test"]
        if self.tests is not None:  # the tests run beside (_test_loop)
            exclude.append("resource_type:test")
        project = self._project_state()
        select: list[str] = []
        if project == self._built_project:
            # the views and seeds are as the last whole build left them: build what the
            # stream changes only (re-creating a view waited for its readers' locks: the
            # tests beside, the dashboards)
            select = ["--select", f"source:{RAW_SOURCE}+"]
            exclude.append("config.materialized:view")
        elif self._built_project is not None:
            log.info("the dbt project changed: this build re-creates its views and seeds too")
        build = self.speed.run(
            "build", *select, "--exclude", *exclude,
            test_scope=self.options.test_scope if self.tests is None else None,
        )  # fmt: skip
        self._report_problems(build, "dbt build postgres", self.speed)
        if build.exit_code != 0 and not build.models:
            # killed or crashed before it built anything: what was ingested is not built
            self._offsets_at_last_build = None
        if any(not p.node.startswith(("test.", "unit_test.")) for p in build.failures) or (
            build.exit_code != 0 and not build.failures
        ):
            self._built_project = None  # a model failed (a view dropped?): all of it next time
        elif not select:
            self._built_project = project
        notify_text = "notify skipped (the build failed)"
        if build.models:
            started = self.clock.monotonic()
            try:
                new, sent = notify_once(self.settings, self.settings.marts_schema, self.options.log_schema,
                                        self.options.alerts_topic)  # fmt: skip
                notify_text = f"notify {self.clock.monotonic() - started:.1f} s ({new} new breaches, {sent} alerts sent)"
            except Exception as exc:  # a notify failure must not stop ingestion
                notify_text = f"notify FAILED ({type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''})"
                log.error("%s; the next cycle tries again", notify_text)
        log.info(
            "%sspeed cycle %d: dbt build postgres %.1f s (%s), %s; %s; %s",
            "final " if final else "",
            self.speed_cycles,
            build.seconds,
            _problems_text(build),
            notify_text,
            self._freshness_text,
            self.lag.text(),
        )
        if build.models:  # something to test
            with self._built:
                self._built_cycles = self.speed_cycles
                self._built.notify_all()

    # -- the tests beside the speed cycle -----------------------------------------------------

    def _test_loop(self) -> None:
        """`dbt test` of what the speed cycles built, each time one or more cycles ended
        since the last test cycle started."""
        while not self._stop.is_set():
            with self._built:
                while not self._stop.is_set() and self._built_cycles <= self._tested_cycles:
                    self._built.wait(timeout=1.0)
            if self._stop.is_set():
                return
            due = self._test_started + self.options.test_interval - self.clock.monotonic()
            if due > 0 and self.clock.wait(due, self._stop):
                return
            self._test_started = self.clock.monotonic()
            if not self._test_cycle():
                # PostgreSQL unreachable, say: not again at once (the speed cycle waits too)
                self.clock.wait(5.0, self._stop)

    def _test_cycle(self, final: bool = False) -> bool:
        """One `dbt test` of every bucket the builds touched since the last one ('untested'
        scope: macros/ingest_tests.sql; or all history). False when it tested nothing (killed,
        or dbt failed before its tests): its builds are left to the next one."""
        assert self.tests is not None
        with self._built:
            first, self._tested_cycles = self._tested_cycles + 1, self._built_cycles
        last = self._tested_cycles
        self.test_cycles += 1
        scope = "all" if self.options.test_scope == "all" else "untested"
        # one test at a time: a test cycle then keeps one core busy at most, and the builds
        # (the marts' latency) have the other (with the profile's two threads each test
        # cycle took both: 83 s of tests in 45 s)
        result = self.tests.run(
            "test", "--threads", "1", "--exclude", "resource_type:unit_test", test_scope=scope
        )
        tested = result.exit_code == 0 or result.tests > 0
        if not tested:
            self._tested_cycles = first - 1
        self._report_problems(result, "dbt test postgres", self.tests)
        built = f"speed cycle {first}" if first == last else f"speed cycles {first}-{last}"
        log.info(
            "%stest cycle %d: dbt test postgres %.1f s (%s) of what %s built",
            "final " if final else "",
            self.test_cycles,
            result.seconds,
            _problems_text(result),
            built,
        )
        return tested

    def _start_freshness(self) -> None:
        if not self.options.freshness:
            return
        if self._freshness_thread is not None and self._freshness_thread.is_alive():
            return

        def check() -> None:
            # the events say whether ingestion runs (no rejects is the healthy state)
            result = self.freshness.run("freshness", "--select", "source:raw.device_usage")
            stale = result.problems
            if stale:
                for problem in stale:
                    log.warning(
                        "STALE SOURCE %s: %s (%s); is an ingestor stuck or is nothing arriving?",
                        problem.node.removeprefix("source.antenna_elt."),
                        problem.message,
                        problem.status,
                    )
                self._freshness_text = "freshness: " + ", ".join(
                    f"{p.node.removeprefix('source.antenna_elt.')} {p.status}" for p in stale
                )
            elif result.exit_code != 0:
                self._freshness_text = f"freshness check failed (dbt exit code {result.exit_code})"
            else:
                self._freshness_text = "sources fresh"

        self._freshness_thread = threading.Thread(target=check, name="freshness", daemon=True)
        self._freshness_thread.start()

    def _report_problems(self, result: StepResult, what: str, step: DbtStep) -> None:
        where = step.log_file
        for problem in result.warnings:
            log.warning(
                "data test %s warns in %s (%s rows): %s",
                problem.node.split(".", 2)[-1],
                what,
                problem.failures,
                problem.message[:300],
            )
        if result.failures:
            self.failed_builds += 1
        for problem in result.failures:
            kind = "DATA TEST" if problem.node.startswith(("test.", "unit_test.")) else "MODEL"
            rows = f", {problem.failures} rows" if problem.failures is not None else ""
            log.error(
                "%s FAILED in %s: %s (%s%s) %s; ingestion goes on%s (log: %s)",
                kind,
                what,
                problem.node.split(".", 2)[-1],
                problem.status,
                rows,
                problem.message[:300],
                "; the next build tries again" if kind == "MODEL" else "",
                where,
            )
        if result.exit_code != 0 and not result.failures and not self._stop.is_set():
            self.failed_builds += 1
            log.error(
                "%s exited with code %d and no results: %s; the next cycle tries again",
                what,
                result.exit_code,
                result.output_tail.strip().splitlines()[-1]
                if result.output_tail.strip()
                else "no output",
            )

    # -- the batch cycle --------------------------------------------------------------------

    def _closed_hours(self) -> ClosedHours:
        if not hasattr(self, "_hours"):
            self._hours = ClosedHours(self.settings.lake_uri, self.settings.s3_endpoint)
        return self._hours

    def _batch_loop(self) -> None:
        hours = self._closed_hours()
        pending: list[int] = []
        while not self._stop.is_set():
            try:
                changed = hours.changed()
            except Exception as exc:  # the lake unreachable for a moment
                log.warning("cannot read the lake's closed hours (%s); trying again", exc)
                changed = []
            todo = sorted(set(pending) | set(changed))
            if todo:
                pending = self._batch_cycle(todo)
            self.clock.wait(self.options.batch_poll_seconds, self._stop)

    def _batch_cycle(self, hours: list[int], final: bool = False) -> list[int]:
        """Build the warehouse for the hours that closed or changed; returns the hours to do
        again at the next poll (a build killed before it built anything, failed loads)."""
        from antenna_elt.sinks.lake.layout import hour_label

        assert self.batch is not None
        self.batch_cycles += 1
        loaded = ""
        again: list[int] = []
        if self.options.warehouse == "bigquery" and hours:
            loaded, again = self._load_bigquery(hours)
        result = self.batch.run(
            "build", "--exclude", "resource_type:unit_test", test_scope=self.options.test_scope
        )
        self._report_problems(result, f"dbt build {self.options.warehouse}", self.batch)
        if result.exit_code != 0 and not result.models:
            again = list(hours)  # killed or crashed before it built anything
        log.info(
            "%sbatch cycle %d: %s%s; dbt build %s %.1f s (%s)",
            "final " if final else "",
            self.batch_cycles,
            f"hours closed or updated: {', '.join(hour_label(h) for h in hours)}"
            if hours
            else "no hour closed",
            loaded,
            self.options.warehouse,
            result.seconds,
            _problems_text(result),
        )
        return again

    def _load_bigquery(self, hours: list[int]) -> tuple[str, list[int]]:
        """Load each hour into BigQuery: the summary, and the hours whose load failed."""
        import subprocess

        from antenna_elt.sinks.lake.layout import hour_label

        failed, again = [], []
        for hour in hours:
            proc = subprocess.run(
                [sys.executable, "-m", "antenna_elt.cli", "load", "bigquery", "--hour", hour_label(hour)],
                capture_output=True, text=True,
            )  # fmt: skip
            if proc.returncode != 0:
                failed.append(hour_label(hour))
                again.append(hour)
                log.error(
                    "load bigquery --hour %s failed: %s",
                    hour_label(hour),
                    proc.stderr.strip()[-300:],
                )
        return f"; loaded into BigQuery: {len(hours) - len(failed)} hours" + (
            f" ({len(failed)} failed: tried again at the next poll)" if failed else ""
        ), again
