"""The runner's own logic, with a fake clock and stand-in processes: workers restarted with
backoff, what a dbt step reports, which closed hours changed."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from fakes import FakeClock

from antenna_elt.run.dbt_steps import summarize
from antenna_elt.run.supervisor import Worker
from antenna_elt.run.watch import ClosedHours
from antenna_elt.sinks.lake import layout


class FakeProcess:
    def __init__(self, pid: int):
        self.pid = pid
        self.returncode: int | None = None
        self.signals: list[int] = []

    def poll(self) -> int | None:
        return self.returncode

    def send_signal(self, sig: int) -> None:
        self.signals.append(sig)
        self.returncode = 0

    def wait(self, timeout: float | None = None) -> int:
        assert self.returncode is not None
        return self.returncode


def worker(clock: FakeClock) -> tuple[Worker, list[FakeProcess]]:
    started: list[FakeProcess] = []

    def spawn(argv: Any, log_file: Path | None) -> FakeProcess:
        started.append(FakeProcess(100 + len(started)))
        return started[-1]

    return Worker(
        "ingest postgres", ["antenna-elt", "ingest", "postgres"], None, clock, spawn
    ), started


def test_a_worker_that_dies_at_once_is_restarted_with_growing_backoff() -> None:
    clock = FakeClock()
    w, started = worker(clock)
    w.start()
    waits = []
    for _ in range(4):
        clock.advance(2)  # it dies two seconds after each start
        started[-1].returncode = 1
        w.check()
        waits.append(w.next_start - clock.monotonic())
        assert w.process is None
        w.check()  # not yet
        assert w.process is None
        clock.advance(waits[-1])
        w.check()
        assert w.process is started[-1]
    assert waits == [1.0, 2.0, 4.0, 8.0]
    assert w.restarts == 4 and w.exit_codes == [1, 1, 1, 1]


def test_a_worker_that_ran_a_while_is_restarted_at_once() -> None:
    clock = FakeClock()
    w, started = worker(clock)
    w.start()
    clock.advance(600)
    started[-1].returncode = -9  # killed
    w.check()
    assert w.process is started[1] and w.restarts == 1 and w.failures == 0


def test_stopping_a_worker_sends_sigterm_and_returns_its_exit_code() -> None:
    clock = FakeClock()
    w, started = worker(clock)
    w.start()
    assert w.stop() == 0
    assert started[0].signals == [15]
    assert w.stop() is None


def test_a_steps_outcome_names_failed_tests_with_their_rows(tmp_path: Path) -> None:
    (tmp_path / "run_results.json").write_text(
        json.dumps(
            {
                "results": [
                    {"unique_id": "model.antenna_elt.bytes", "status": "success",
                     "adapter_response": {"rows_affected": 120}},
                    {"unique_id": "model.antenna_elt.bytes_hourly", "status": "success",
                     "adapter_response": {"rows_affected": 30}},
                    {"unique_id": "test.antenna_elt.assert_bytes_equals_staged_events", "status": "fail",
                     "failures": 3, "message": "Got 3 results, configured to fail if != 0"},
                    {"unique_id": "test.antenna_elt.not_null_bytes_id.abc", "status": "pass", "failures": 0},
                ]
            }
        )
    )  # fmt: skip
    result = summarize("build", 1, 8.5, tmp_path, "")
    assert (result.models, result.rows_affected, result.tests, result.tests_failed) == (
        2,
        150,
        2,
        1,
    )
    [problem] = result.problems
    assert (problem.node, problem.status, problem.failures) == (
        "test.antenna_elt.assert_bytes_equals_staged_events",
        "fail",
        3,
    )
    assert not result.ok


def test_freshness_reports_stale_sources(tmp_path: Path) -> None:
    (tmp_path / "sources.json").write_text(
        json.dumps(
            {
                "results": [
                    {"unique_id": "source.antenna_elt.raw.device_usage", "status": "warn",
                     "max_loaded_at_time_ago_in_s": 1234.5},
                    {"unique_id": "source.antenna_elt.lake.closed_hours", "status": "pass"},
                ]
            }
        )
    )  # fmt: skip
    result = summarize("freshness", 0, 4.0, tmp_path, "")
    assert [(p.node, p.status, p.message) for p in result.problems] == [
        ("source.antenna_elt.raw.device_usage", "warn", "newest row 1234 s old")
    ]


def test_closed_hours_report_new_hours_and_new_versions_once(tmp_path: Path) -> None:
    hours = ClosedHours(tmp_path.as_uri())
    assert hours.changed() == []
    folder = tmp_path / layout.CLOSED_HOURS
    folder.mkdir(parents=True)
    (folder / "2026-11-24T08.json").write_text(json.dumps({"version": 1}))
    (folder / "2026-11-24T09.json").write_text(json.dumps({"version": 1}))
    assert hours.changed() == [
        layout.parse_hour("2026-11-24T08"),
        layout.parse_hour("2026-11-24T09"),
    ]
    assert hours.changed() == []
    (folder / "2026-11-24T08.json").write_text(json.dumps({"version": 2}))
    assert hours.changed() == [layout.parse_hour("2026-11-24T08")]


def test_the_dbt_workers_fingerprint_changes_with_any_project_file(tmp_path: Path) -> None:
    """The persistent dbt worker parses again when, and only when, a file the manifest
    depends on changed: a model edited, added or removed, a macro, the project file."""
    import os

    from antenna_elt.run.dbt_worker import fingerprint

    (tmp_path / "models" / "marts").mkdir(parents=True)
    (tmp_path / "macros").mkdir()
    model = tmp_path / "models" / "marts" / "m.sql"
    model.write_text("select 1 as one\n")
    (tmp_path / "macros" / "x.sql").write_text("{% macro x() %}1{% endmacro %}\n")
    (tmp_path / "dbt_project.yml").write_text("name: p\n")
    (tmp_path / "logs").mkdir()
    first = fingerprint(tmp_path)
    assert fingerprint(tmp_path) == first
    (tmp_path / "logs" / "dbt.log").write_text("not the project\n")
    assert fingerprint(tmp_path) == first
    model.write_text("select 2 as one\n")
    os.utime(model, ns=(1, 1))  # same size, another time
    edited = fingerprint(tmp_path)
    assert edited != first
    (tmp_path / "models" / "marts" / "n.sql").write_text("select 1 as one\n")
    added = fingerprint(tmp_path)
    assert added != edited
    (tmp_path / "dbt_project.yml").write_text("name: q\n")
    assert fingerprint(tmp_path) != added


def test_the_dbt_worker_parses_with_the_options_a_manifest_depends_on() -> None:
    from antenna_elt.run.dbt_worker import parse_arguments

    args = ["build", "--target", "postgres", "--target-path", "/t", "--vars", '{"a": 1}',
            "--exclude", "resource_type:unit_test", "--select", "bytes+"]  # fmt: skip
    assert parse_arguments(args) == ["--target", "postgres", "--target-path", "/t",
                                     "--vars", '{"a": 1}']  # fmt: skip


class FakeOffsets:
    """The committed offsets and lag the runner reads from Kafka: fixed."""

    def committed_text(self, name: str) -> str:
        return "p0=5 p1=7"

    def text(self) -> str:
        return "lag postgres p0=0 p1=0"


class FakeStep:
    """A dbt step that returns the given results in turn and records its calls."""

    def __init__(
        self, results: list[Any], project: Path | None = None, log_file: Path | None = None
    ):
        import threading

        self.results = results
        self.calls: list[tuple[tuple[str, ...], str | None]] = []
        self.called = threading.Event()
        self.project = project or Path("/nonexistent")
        self.log_file = log_file or self.project / "dbt.log"

    def run(self, *args: str, test_scope: str | None = None) -> Any:
        self.calls.append((args, test_scope))
        self.called.set()
        return self.results.pop(0)

    def stop(self) -> None:
        pass


def test_a_speed_build_killed_midway_is_redone_at_once_not_after_the_idle_minute(
    tmp_path: Path,
) -> None:
    """A speed cycle counts what was ingested as built only when the build ran: after a
    build killed midway (no results) the next cycle builds the same offsets again at once,
    instead of waiting for new events or the idle rebuild a minute later."""
    from antenna_elt.run.dbt_steps import StepResult
    from antenna_elt.run.runner import Runner, RunOptions
    from antenna_elt.settings import load_settings

    clock = FakeClock()
    settings = load_settings({"ANTENNA_ELT_HOME": str(tmp_path)})
    runner = Runner(
        settings, RunOptions(warehouse="none", freshness=False, work_dir=tmp_path), clock
    )

    runner.lag = FakeOffsets()  # type: ignore[assignment]
    killed = StepResult("build", -9, 0.1)
    failed_test = StepResult("build", 1, 5.0, models=19, tests=105)
    runner.speed = FakeStep([killed, failed_test], tmp_path)  # type: ignore[assignment]
    assert runner._due()
    runner._speed_cycle()
    assert runner._due()  # the same offsets, but the build never ran
    import antenna_elt.alerts.quota as quota

    sent = []
    original = quota.notify_once
    quota.notify_once = lambda *a, **k: sent.append(1) or (0, 0)  # type: ignore[assignment]
    try:
        runner._speed_cycle()
    finally:
        quota.notify_once = original  # type: ignore[assignment]
    # a build that ran (a data test failed: logged loudly) counts: nothing new, no rebuild
    # until the idle minute
    assert not runner._due()
    clock.advance(61)
    assert runner._due()


def test_hours_of_a_batch_build_killed_midway_are_built_at_the_next_poll(tmp_path: Path) -> None:
    """The batch cycle builds the warehouse when the lake closes or changes an hour; a
    build killed before it built anything leaves those hours to the next poll, instead of
    waiting for the next hour to close."""
    from antenna_elt.run.dbt_steps import StepResult
    from antenna_elt.run.runner import Runner, RunOptions
    from antenna_elt.settings import load_settings

    clock = FakeClock()
    settings = load_settings({"ANTENNA_ELT_HOME": str(tmp_path)})
    runner = Runner(settings, RunOptions(freshness=False, work_dir=tmp_path), clock)
    built: list[list[int]] = []

    class Step:
        log_file = tmp_path / "dbt-duckdb.log"

        def __init__(self) -> None:
            self.results = [StepResult("build", -9, 0.1), StepResult("build", 0, 9.0, models=20)]

        def run(self, *args: Any, **kwargs: Any) -> StepResult:
            return self.results.pop(0)

    class Hours:
        def __init__(self) -> None:
            self.polls = [[7200], [], []]

        def changed(self) -> list[int]:
            if len(self.polls) == 1:
                runner._stop.set()
            return self.polls.pop(0)

    runner.batch = Step()  # type: ignore[assignment]
    runner._hours = Hours()  # type: ignore[assignment]
    original = runner._batch_cycle

    def cycle(hours: list[int], final: bool = False) -> list[int]:
        built.append(hours)
        return original(hours, final)

    runner._batch_cycle = cycle  # type: ignore[method-assign]
    runner._batch_loop()
    assert built == [[7200], [7200]]


def test_the_tests_beside_the_speed_cycle_check_every_build_once(tmp_path: Path) -> None:
    """With the tests beside (the default), a speed cycle builds without tests and publishes
    at once; a `dbt test` in the 'untested' scope runs when builds ended since the last one
    started, covering all of them; a killed build wakes no test; a `dbt test` killed before
    it tested anything leaves its builds to the next one; stopping ends the loop."""
    import threading

    import antenna_elt.alerts.quota as quota
    from antenna_elt.run.dbt_steps import StepResult
    from antenna_elt.run.runner import Runner, RunOptions
    from antenna_elt.settings import load_settings

    settings = load_settings({"ANTENNA_ELT_HOME": str(tmp_path)})
    runner = Runner(
        settings, RunOptions(warehouse="none", freshness=False, work_dir=tmp_path), FakeClock()
    )

    built = StepResult("build", 0, 3.0, models=19)
    runner.lag = FakeOffsets()  # type: ignore[assignment]
    runner.speed = speed = FakeStep([built, built, StepResult("build", -9, 0.1), built], tmp_path)  # type: ignore[assignment]
    runner.tests = tests = FakeStep(  # type: ignore[assignment]
        [StepResult("test", -9, 0.2), StepResult("test", 0, 9.0, tests=105),
         StepResult("test", 0, 4.0, tests=105)], tmp_path
    )  # fmt: skip
    original = quota.notify_once
    quota.notify_once = lambda *a, **k: (0, 0)  # type: ignore[assignment]
    loop = threading.Thread(target=runner._test_loop, daemon=True)
    try:
        runner._speed_cycle()
        runner._speed_cycle()
        assert speed.calls[0] == (
            ("build", "--exclude", "resource_type:unit_test", "resource_type:test"),
            None,
        )
        runner._test_cycle()  # killed before it tested anything
        assert runner._tested_cycles == 0
        runner._test_cycle()  # both builds
        assert tests.calls[-1] == (
            ("test", "--threads", "1", "--exclude", "resource_type:unit_test"),
            "untested",
        )
        assert runner._tested_cycles == 2
        runner._speed_cycle()  # killed: nothing built, nothing to test
        assert runner._built_cycles == 2
        tests.called.clear()
        loop.start()
        assert not tests.called.wait(0.3)
        runner._speed_cycle()  # a build: the loop tests it
        assert tests.called.wait(5)
        runner.stop()
        loop.join(5)
        assert not loop.is_alive()
    finally:
        quota.notify_once = original  # type: ignore[assignment]
        runner.stop()
    assert len(tests.calls) == 3 and runner.test_cycles == 3 and runner._tested_cycles == 4


def test_speed_builds_leave_views_and_seeds_alone_until_the_project_changes(tmp_path: Path) -> None:
    """Once a whole build succeeded, a speed cycle builds only what is downstream of the
    ingestors' source, without the views (re-creating a view waits for the locks of its
    readers: the tests beside, the dashboards) and the seeds; an edit in the project, a
    model that failed or a build killed before it ran bring the whole build back."""
    import antenna_elt.alerts.quota as quota
    from antenna_elt.run.dbt_steps import Problem, StepResult
    from antenna_elt.run.runner import Runner, RunOptions
    from antenna_elt.settings import load_settings

    project = tmp_path / "project"
    (project / "models").mkdir(parents=True)
    model = project / "models" / "stg_raw__device_usage.sql"
    model.write_text("select 1 as one")
    settings = load_settings({"ANTENNA_ELT_HOME": str(tmp_path)})
    options = RunOptions(warehouse="none", freshness=False, work_dir=tmp_path)
    ok = StepResult("build", 0, 3.0, models=19)
    killed = StepResult("build", -9, 0.1)
    view_gone = StepResult("build", 1, 2.0, models=14, problems=[Problem(
        "model.antenna_elt.int_device_usage__deduplicated", "error", None,
        'relation "staging.stg_raw__device_usage" does not exist')])  # fmt: skip
    whole = ("build", "--exclude", "resource_type:unit_test", "resource_type:test")
    steady = ("build", "--select", "source:raw+", "--exclude", "resource_type:unit_test",
              "resource_type:test", "config.materialized:view")  # fmt: skip
    original = quota.notify_once
    quota.notify_once = lambda *a, **k: (0, 0)  # type: ignore[assignment]
    try:
        runner = Runner(settings, options, FakeClock())
        runner.lag = FakeOffsets()  # type: ignore[assignment]
        runner.speed = speed = FakeStep([killed, ok, ok, ok, ok, view_gone, ok, ok], project)  # type: ignore[assignment]
        for _ in range(3):
            runner._speed_cycle()
        model.write_text("select 1 as one, 2 as two")  # an analyst's edit
        for _ in range(5):
            runner._speed_cycle()
        assert [args for args, _ in speed.calls] == [
            whole, whole, steady, whole, steady, steady, whole, steady
        ]  # fmt: skip

        # tests in the build: a failing data test is no failed model
        runner = Runner(
            settings, RunOptions(**{**options.__dict__, "tests": "in-build"}), FakeClock()
        )
        runner.lag = FakeOffsets()  # type: ignore[assignment]
        test_failed = StepResult("build", 1, 5.0, models=19, tests=105, problems=[
            Problem("test.antenna_elt.assert_bytes_equals_staged_events", "fail", 3, "")])  # fmt: skip
        runner.speed = speed = FakeStep([test_failed, ok], project)  # type: ignore[assignment]
        runner._speed_cycle()
        runner._speed_cycle()
        assert speed.calls == [
            (("build", "--exclude", "resource_type:unit_test"), "touched"),
            (("build", "--select", "source:raw+", "--exclude", "resource_type:unit_test",
              "config.materialized:view"), "touched"),
        ]  # fmt: skip
    finally:
        quota.notify_once = original  # type: ignore[assignment]


def test_the_tests_beside_start_test_interval_seconds_apart_and_cover_the_builds_between(
    tmp_path: Path,
) -> None:
    """A test cycle starts at the earliest --test-interval seconds after the previous one
    started, and then covers every build that ended meanwhile; a stop during the wait ends
    the loop without a test."""
    import threading

    import antenna_elt.alerts.quota as quota
    from antenna_elt.run.dbt_steps import StepResult
    from antenna_elt.run.runner import Runner, RunOptions
    from antenna_elt.settings import load_settings

    class HeldClock(FakeClock):
        """The test loop's wait for the interval is held until the test releases it."""

        def __init__(self) -> None:
            super().__init__()
            self.waiting = threading.Event()
            self.release = threading.Event()

        def wait(self, seconds: float, stop: threading.Event | None = None) -> bool:
            if threading.current_thread().name != "tests" or stop is None:
                return super().wait(seconds, stop)
            self.waits.append(seconds)
            self.waiting.set()
            while not self.release.is_set() and not stop.is_set():
                stop.wait(0.01)
            self.release.clear()
            self.waiting.clear()
            if not stop.is_set():
                self.advance(seconds)
            return stop.is_set()

    clock = HeldClock()
    settings = load_settings({"ANTENNA_ELT_HOME": str(tmp_path)})
    options = RunOptions(warehouse="none", freshness=False, work_dir=tmp_path, test_interval=60)
    runner = Runner(settings, options, clock)
    runner.lag = FakeOffsets()  # type: ignore[assignment]
    built = StepResult("build", 0, 3.0, models=19)
    runner.speed = FakeStep([built] * 4, tmp_path)  # type: ignore[assignment]
    started: list[tuple[float, int]] = []

    class Tests(FakeStep):
        def run(self, *args: str, test_scope: str | None = None) -> Any:
            started.append((clock.monotonic(), runner._built_cycles))
            clock.advance(20)  # the test cycle takes 20 s
            return super().run(*args, test_scope=test_scope)

    runner.tests = tests = Tests([StepResult("test", 0, 20.0, tests=105)] * 3, tmp_path)  # type: ignore[assignment]
    original = quota.notify_once
    quota.notify_once = lambda *a, **k: (0, 0)  # type: ignore[assignment]
    loop = threading.Thread(target=runner._test_loop, name="tests", daemon=True)
    try:
        runner._speed_cycle()
        loop.start()
        assert tests.called.wait(5)  # the first: at once
        tests.called.clear()
        runner._speed_cycle()
        assert clock.waiting.wait(5) and clock.waits == [40]  # 60 s after the first's start
        runner._speed_cycle()  # ended during the wait: the same test covers it
        clock.release.set()
        assert tests.called.wait(5)
        assert [(t - started[0][0], cycles) for t, cycles in started] == [(0, 1), (60, 3)]
        assert runner._tested_cycles == 3
        runner._speed_cycle()
        assert clock.waiting.wait(5) and clock.waits == [40, 40]
        runner.stop()  # a stop during the wait ends the loop without a test
        loop.join(5)
        assert not loop.is_alive() and len(started) == 2
    finally:
        quota.notify_once = original  # type: ignore[assignment]
        runner.stop()
