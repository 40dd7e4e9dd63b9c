"""Shared fixtures: the real local stack (started if needed, never skipped), fresh topics
and schemas so that tests never see each other's data."""

from __future__ import annotations

import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from antenna_elt.devstack import stack
from antenna_elt.ingest.consumer import CLIENTS
from antenna_elt.settings import Settings, load_settings

ROOT = Path(__file__).resolve().parents[3]

# `make test` runs this suite on pytest-xdist workers (`-n 2 --dist loadscope`, with the
# scheduler below). A file's tests run on one worker, so its module fixtures are built once;
# files that share a session fixture share a worker, so it is built once too.
SHARED_SESSION_FIXTURES = {
    "test_dbt_marts": "simulated",  # `simulated`: one fixed-seed run through both ingestors
    "test_spark": "simulated",
    "test_conventions": "duckdb_warehouse",
    "test_looker": "duckdb_warehouse",
}
# The longest files go first so that the workers end at about the same time (CI durations).
LONGEST_FIRST = ["test_airflow", "test_incremental", "test_spark", "test_dbt_marts",
                 "test_dashboards", "test_run", "test_fencing"]  # fmt: skip


def file_group(nodeid: str) -> str:
    """The unit of work a test belongs to: its file, or the group of files it shares a
    session fixture with."""
    module = Path(nodeid.split("::", 1)[0]).stem
    return SHARED_SESSION_FIXTURES.get(module, module)


def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """xdist's loadscope scheduling by :func:`file_group` (its `loadgroup` marks do nothing
    under pytest 9.2, whose node ids xdist can no longer suffix)."""
    from xdist.scheduler import LoadScopeScheduling

    class FileGroupScheduling(LoadScopeScheduling):  # type: ignore[misc]
        def _split_scope(self, nodeid: str) -> str:
            return file_group(nodeid)

    # loadscope re-sorts its work units by their number of tests unless told not to, which
    # undid LONGEST_FIRST (a few long Airflow tests were scheduled last)
    config.option.loadscopereorder = False
    return FileGroupScheduling(config, log)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Longest files first (each worker takes the next group in collection order)."""
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(Path(str(item.fspath)).stem, len(rank)))


@pytest.fixture(scope="session")
def settings() -> Settings:
    settings = load_settings()
    try:
        stack.ensure_up(settings)
    except Exception as exc:
        pytest.fail(f"local stack could not start: {exc}", pytrace=False)
    return settings


@pytest.fixture(params=CLIENTS)
def kafka_client(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Each Kafka client in turn, through ANTENNA_ELT_KAFKA_CLIENT: the ingestors started as
    processes inherit it and the in-process loops of the helpers read it. The core ingest
    suites ask for it (``pytest.mark.usefixtures("kafka_client")``), so they run against
    both clients; the other tests use the default client."""
    monkeypatch.setenv("ANTENNA_ELT_KAFKA_CLIENT", request.param)
    return str(request.param)


@pytest.fixture
def kafka_topic(settings: Settings) -> Iterator[str]:
    from kafka.admin import KafkaAdminClient, NewTopic

    name = f"test-{uuid.uuid4().hex[:8]}"
    admin = KafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap_servers)
    admin.create_topics([NewTopic(name, 3, 1)])
    try:
        yield name
    finally:
        try:
            admin.delete_topics([name])
        finally:
            admin.close()


@pytest.fixture
def pg_conn(settings: Settings) -> Iterator[Any]:
    with psycopg.connect(settings.pg_conninfo, autocommit=True) as conn:
        yield conn


@pytest.fixture
def pg_schema(pg_conn: Any) -> Iterator[str]:
    name = f"t_{uuid.uuid4().hex[:8]}"
    pg_conn.execute(f"create schema {name}")
    try:
        yield name
    finally:
        pg_conn.execute(f"drop schema if exists {name} cascade")


def run_cli(
    *args: str, env: dict[str, str] | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """Run `antenna-elt ARGS...` in a child process and capture its output."""
    return subprocess.run(
        [sys.executable, "-m", "antenna_elt.cli", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=timeout,
    )


@pytest.fixture(scope="session")
def duckdb_warehouse(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """The dbt project built on DuckDB over a small lake (see warehouse.py), once a run."""
    import warehouse

    return warehouse.build(tmp_path_factory.mktemp("warehouse"))


@pytest.fixture(scope="session")
def simulated(settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """A fixed-seed simulated run through both Python ingestors (marts_run.py), shared by
    test_dbt_marts.py and test_spark.py."""
    import marts_run

    yield from marts_run.simulated_run(settings, tmp_path_factory.mktemp("marts"))


@pytest.fixture(scope="session")
def postgres_marts(simulated: Any) -> str:
    import marts_run

    return marts_run.build_postgres_marts(simulated)


@pytest.fixture(scope="session")
def duckdb_marts(simulated: Any) -> str:
    import marts_run

    return marts_run.build_duckdb_marts(simulated)
