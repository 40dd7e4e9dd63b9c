"""Incremental marts stay exact under continuous ingestion, at every grain (issue 12).

Events reach the marts the way a schedule meets them: a backlog ingested in steps while the
partitions progress unevenly (partition skew), events far older than anything built, an event
from the near future, and `dbt build` running while the ingestors keep writing. Each scenario
runs through the real Kafka broker into both ingestors (PostgreSQL staging and the Parquet
lake) and both warehouses (PostgreSQL, DuckDB over the lake). After every incremental build
its data tests pass, every incremental mart equals a full refresh on the same rows, and at the
end the serving marts equal the simulator's ledger.
"""

from __future__ import annotations

import functools
import json
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
import pytest
from conftest import run_cli
from helpers import ROOT, produce, unique_group

from antenna_elt.contract import parse
from antenna_elt.dbt import query_duckdb, query_postgres, run_dbt
from antenna_elt.ingest.loop import IngestLoop, LoopOptions, Stats
from antenna_elt.settings import Settings
from antenna_elt.sim import ledger as ledger_module
from antenna_elt.sim.users import load_users
from antenna_elt.sinks.lake.manifests import is_compacted
from antenna_elt.sinks.lake.sink import LakeSink
from antenna_elt.sinks.postgres import PostgresSink

INCREMENTAL_MARTS = (
    "fct_usage_windowed",
    "fct_usage_hourly",
    "fct_user_usage_hourly",
    "fct_quota_breaches",
    "fct_network_activity_windowed",
    "fct_antenna_bandwidth_windowed",
    "bytes",
    "bytes_hourly",
    "user_quota_limit",
)
DEDUPLICATED = "int_device_usage__deduplicated"
# incremental on every target (the de-duplicated events: a table on PostgreSQL only)
INCREMENTAL_INTERMEDIATE = ("int_device_usage__per_second", "int_device_usage__last_seen_windowed")
START = datetime(2026, 11, 20, tzinfo=UTC)
BACKLOG = ("--start", "2026-11-20T00:00:00Z", "--duration", "6h", "--count", "48000", "--seed", "21",
           "--duplicate-share", "0.02")  # fmt: skip
# events for the evening before, sent after hours up to 05:59 were built: ten hours late
LATE = ("--start", "2026-11-19T20:00:00Z", "--duration", "30m", "--count", "4000", "--seed", "22")  # fmt: skip


@dataclass
class Warehouse:
    """One target: where its staged events come from and where its marts go."""

    target: str
    schema: str
    env: dict[str, str]

    def rows(
        self, schema: str, mart: str, settings: Settings, layer: str = "marts"
    ) -> list[tuple[Any, ...]]:
        sql = f"select * from {schema}_{layer}.{mart}"
        if self.target == "postgres":
            found = query_postgres(settings.pg_conninfo, sql)
        else:
            path = self.env["ANTENNA_ELT_DUCKDB_PATH"] + (".ref" if schema.endswith("_ref") else "")
            found = query_duckdb(path, sql)
        return sorted(
            (tuple(round(v, 9) if isinstance(v, float) else v for v in row) for row in found),
            key=lambda row: tuple((v is None, str(v)) for v in row),
        )


@dataclass
class Pipeline:
    settings: Settings
    topic: str
    raw_schema: str
    pg_group: str
    lake: Path
    lake_group: str
    postgres: Warehouse
    duckdb: Warehouse
    tmp: Path

    @property
    def warehouses(self) -> tuple[Warehouse, Warehouse]:
        return self.postgres, self.duckdb

    def ingest(
        self, max_messages: int | None = None, *, batch_size: int = 5_000, compact: bool = True
    ) -> tuple[Stats, Stats]:
        """Both ingestors, each up to `max_messages` further (or until caught up); the lake
        ingestor compacts the hours it closes unless `compact` is false."""
        pg_sink = functools.partial(
            PostgresSink, self.settings.pg_conninfo, self.raw_schema, self.pg_group
        )
        lake_sink = functools.partial(
            LakeSink, self.lake.as_uri(), self.lake_group, compact=compact
        )
        stats = []
        for sink, group in ((pg_sink, self.pg_group), (lake_sink, self.lake_group)):
            options = LoopOptions(
                topic=self.topic,
                group_id=group,
                bootstrap_servers=self.settings.kafka_bootstrap_servers,
                batch_size=batch_size,
                max_latency=0.5,
                until_caught_up=max_messages is None,
                max_messages=max_messages,
                idle_timeout=120,
            )
            stats.append(IngestLoop(sink, options).run())
        return stats[0], stats[1]

    def simulate(self, *args: str, topic: str | None = None) -> ledger_module.Ledger:
        path = self.tmp / f"ledger-{uuid.uuid4().hex[:6]}.json"
        proc = run_cli(
            "simulate", "--topic", topic or self.topic, "--ledger", str(path), "--quiet", *args
        )
        assert proc.returncode == 0, proc.stderr
        return ledger_module.load(path)

    def simulate_holding_back(
        self, *args: str, partition: int, after: datetime
    ) -> tuple[ledger_module.Ledger, list[Message]]:
        """The simulator's events, each to the partition the simulator chose and in its order,
        except that `partition`'s events from `after` on are held back (returned, to send
        later with `send`): a partition that lags hours behind the others, whatever the
        consumer's fetch sizes."""
        from kafka.admin import KafkaAdminClient, NewTopic

        source = f"{self.topic}-source"
        admin = KafkaAdminClient(bootstrap_servers=self.settings.kafka_bootstrap_servers)
        admin.create_topics([NewTopic(source, 3, 1)])
        try:
            ledger = self.simulate(*args, topic=source)
            messages = topic_messages(self.settings, source)
        finally:
            admin.delete_topics([source])
            admin.close()
        cut = after.timestamp()
        held = [m for m in messages if m.partition == partition and event_time(m.value) >= cut]
        kept = {(m.partition, m.offset) for m in held}
        self.send([m for m in messages if (m.partition, m.offset) not in kept])
        return ledger, held

    def send(self, messages: list[Message]) -> None:
        """Messages to the scenario's topic, each to its partition, in order."""
        from kafka import KafkaProducer

        producer = KafkaProducer(
            bootstrap_servers=self.settings.kafka_bootstrap_servers, acks="all",
            max_in_flight_requests_per_connection=1,
        )  # fmt: skip
        for m in messages:
            producer.send(self.topic, key=m.key, value=m.value, partition=m.partition)
        producer.flush(timeout=60)
        producer.close()


def event_time(value: bytes) -> int:
    """A simulated event's time (its producers misspell the field now and then)."""
    event = json.loads(value)
    return int(event["timestamp"] if "timestamp" in event else event["timestmap"])


@dataclass(frozen=True)
class Message:
    partition: int
    offset: int
    key: bytes | None
    value: bytes


def topic_messages(settings: Settings, topic: str) -> list[Message]:
    """Every message of `topic`, partition by partition, each in offset order."""
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(bootstrap_servers=settings.kafka_bootstrap_servers)
    try:
        parts = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic))]
        ends = consumer.end_offsets(parts)
        consumer.assign(parts)
        consumer.seek_to_beginning()
        found: list[Message] = []
        deadline = time.monotonic() + 60
        while any(consumer.position(tp) < ends[tp] for tp in parts):
            assert time.monotonic() < deadline, f"{topic}: not read to its end in 60 s"
            for records in consumer.poll(timeout_ms=500).values():
                found += [Message(r.partition, r.offset, r.key, r.value) for r in records]
        return sorted(found, key=lambda m: (m.partition, m.offset))
    finally:
        consumer.close()


def merged(*ledgers: ledger_module.Ledger) -> ledger_module.Ledger:
    """One ledger for several simulator runs (their events are distinct)."""
    total = ledger_module.Ledger()
    for ledger in ledgers:
        for key, (nbytes, events) in ledger.totals.items():
            slot = total.totals.setdefault(key, [0, 0])
            slot[0] += nbytes
            slot[1] += events
        total.total_bytes += ledger.total_bytes
        for device, last in ledger.last_seen.items():
            total.last_seen[device] = max(last, total.last_seen.get(device, last))
        for second, nbytes in ledger.seconds.items():
            total.seconds[second] = total.seconds.get(second, 0) + nbytes
    total.finish(load_users())
    return total


def drop_schemas(settings: Settings, *prefixes: str) -> None:
    with psycopg.connect(settings.pg_conninfo, autocommit=True) as conn:
        for prefix in prefixes:
            for (name,) in conn.execute(
                "select nspname from pg_namespace where nspname = %s or nspname like %s",
                (prefix, f"{prefix}\\_%"),
            ).fetchall():
                conn.execute(f'drop schema "{name}" cascade')


@pytest.fixture
def pipeline(settings: Settings, tmp_path: Path) -> Iterator[Pipeline]:
    from kafka.admin import KafkaAdminClient, NewTopic

    tag = uuid.uuid4().hex[:8]
    topic, raw_schema = f"incr-{tag}", f"raw_incr_{tag}"
    admin = KafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap_servers)
    admin.create_topics([NewTopic(topic, 3, 1)])
    lake = tmp_path / "lake"
    base = {"ANTENNA_ELT_LAKE": lake.as_uri()}
    pg = Warehouse(
        "postgres", f"incr_pg_{tag}", {**base, "ANTENNA_ELT_DBT_SCHEMA": f"incr_pg_{tag}"}
    )
    duck = Warehouse(
        "duckdb",
        f"incr_duck_{tag}",
        {
            **base,
            "ANTENNA_ELT_DBT_SCHEMA": f"incr_duck_{tag}",
            "ANTENNA_ELT_DUCKDB_PATH": str(tmp_path / "warehouse.duckdb"),
        },
    )
    try:
        yield Pipeline(
            settings, topic, raw_schema, unique_group(), lake, unique_group(), pg, duck, tmp_path
        )
    finally:
        admin.delete_topics([topic])
        admin.close()
        drop_schemas(settings, raw_schema, pg.schema)


def dbt(
    pipeline: Pipeline,
    warehouse: Warehouse,
    *args: str,
    env: dict[str, str] | None = None,
    check: bool = True,
    variables: dict[str, str] | None = None,
    instance: str = "",
) -> subprocess.CompletedProcess[str]:
    """dbt on the scenario's staging, with a target path of each configuration's own (so
    that dbt's partial parsing holds from one build to the next) and each `instance`'s own
    (two dbt processes at once)."""
    env = env or warehouse.env
    target_path = pipeline.tmp / "dbt-target" / f"{env['ANTENNA_ELT_DBT_SCHEMA']}{instance}"
    return run_dbt(
        [*args, "--target", warehouse.target, "--target-path", str(target_path),
         "--vars", json.dumps({"raw_schema": pipeline.raw_schema, **(variables or {})})],
        env=env,
        check=check,
    )  # fmt: skip


def build(pipeline: Pipeline, warehouse: Warehouse) -> None:
    """An incremental `dbt build`: every model, data test and unit test must pass."""
    dbt(pipeline, warehouse, "build")


def reference(pipeline: Pipeline, warehouse: Warehouse) -> str:
    schema = f"{warehouse.schema}_ref"
    env = {**warehouse.env, "ANTENNA_ELT_DBT_SCHEMA": schema}
    if warehouse.target == "duckdb":
        env["ANTENNA_ELT_DUCKDB_PATH"] = warehouse.env["ANTENNA_ELT_DUCKDB_PATH"] + ".ref"
    dbt(pipeline, warehouse, "build", "--full-refresh", "--resource-type", "model",
        "--resource-type", "seed", env=env)  # fmt: skip
    return schema


def assert_incremental_equals_full_refresh(pipeline: Pipeline, warehouse: Warehouse) -> None:
    ref = reference(pipeline, warehouse)
    settings = pipeline.settings
    for mart in INCREMENTAL_MARTS:
        built = warehouse.rows(warehouse.schema, mart, settings)
        assert built == warehouse.rows(ref, mart, settings), f"{warehouse.target}: {mart}"
    intermediate = INCREMENTAL_INTERMEDIATE
    if warehouse.target == "postgres":  # an additive table there, a view elsewhere
        intermediate += (DEDUPLICATED,)
    for model in intermediate:
        held = warehouse.rows(warehouse.schema, model, settings, "intermediate")
        assert held == warehouse.rows(ref, model, settings, "intermediate"), (
            f"{warehouse.target}: {model}"
        )


def naive(moment: datetime) -> datetime:
    return moment.astimezone(UTC).replace(tzinfo=None)


def assert_marts_equal_ledger(
    pipeline: Pipeline, warehouse: Warehouse, ledger: ledger_module.Ledger
) -> None:
    rows = {
        mart: warehouse.rows(warehouse.schema, mart, pipeline.settings)
        for mart in ("bytes", "bytes_hourly", "user_quota_limit")
    }
    emails = {u.id: u.email for u in load_users()}
    for mart, grain, kinds in (
        ("bytes", "window", {"antenna_bytes_total": "antenna", "id_bytes_total": "user", "app_bytes_total": "app"}),
        ("bytes_hourly", "hour", {"antenna_bytes_total": "antenna", "mail_bytes_total": "user", "app_bytes_total": "app"}),
    ):  # fmt: skip
        for kind, dimension in kinds.items():
            served = {(ts, key): value for ts, key, value, t in rows[mart] if t == kind}
            expected = {
                (naive(ts), emails[key] if kind == "mail_bytes_total" else key): value
                for (ts, key), value in ledger.bytes_by(grain, dimension).items()
                if kind != "mail_bytes_total" or key in emails
            }
            assert served == expected, f"{warehouse.target}: {mart} {kind}"
    breaches = sorted((e, u, q, naive(h)) for e, h, u, q in ledger.breaches())
    assert breaches, "the scenario has quota breaches"
    assert sorted(rows["user_quota_limit"]) == breaches, f"{warehouse.target}: user_quota_limit"
    served_breaches = query_breaches(pipeline, warehouse)
    assert served_breaches == sorted((e, naive(h), u) for e, h, u, _ in ledger.breaches())
    assert warehouse.rows(warehouse.schema, "fct_devices_active_recent", pipeline.settings) == [
        recent_row(ledger)
    ], f"{warehouse.target}: fct_devices_active_recent"


def recent_row(ledger: ledger_module.Ledger) -> tuple[Any, ...]:
    """fct_devices_active_recent's one row as the ledger has it."""
    recent = ledger.recent
    assert recent is not None and recent["devices_active"] > 0, "the scenario has events"
    return (
        naive(ledger_module.parse_iso(recent["as_of"])),
        recent["active_minutes"],
        recent["devices_active"],
        recent["unknown_devices_active"],
        recent["bytes_total"],
    )


def query_breaches(pipeline: Pipeline, warehouse: Warehouse) -> list[tuple[Any, ...]]:
    sql = f"select email, hour_start, usage_bytes from {warehouse.schema}_marts.fct_quota_breaches"
    if warehouse.target == "postgres":
        found = query_postgres(pipeline.settings.pg_conninfo, sql)
    else:
        found = query_duckdb(warehouse.env["ANTENNA_ELT_DUCKDB_PATH"], sql)
    return sorted(found)


def newest_event_per_partition(pipeline: Pipeline) -> dict[int, datetime]:
    rows = query_postgres(
        pipeline.settings.pg_conninfo,
        f"select kafka_partition, max(event_time) from {pipeline.raw_schema}.device_usage group by 1",
    )
    return {int(p): t for p, t in rows}


def test_skewed_backlog_late_and_future_events_build_incrementally_to_a_full_refresh(
    pipeline: Pipeline,
) -> None:
    """A 6-hour backlog ingested in two steps with a build after each, the second with events
    ten hours late and one a minute in the future, then more late events."""
    # 1. the backlog but for partition 1's events after 01:00: the partitions progress
    #    unevenly, so one partition's events lie hours behind another's when the first build
    #    runs
    backlog, held_back = pipeline.simulate_holding_back(
        *BACKLOG, partition=1, after=START.replace(hour=1)
    )
    assert held_back, "partition 1 has events after 01:00"
    pipeline.ingest()
    newest = newest_event_per_partition(pipeline)
    assert newest[1] < START.replace(hour=1) and min(newest[0], newest[2]) > START.replace(hour=5)

    for warehouse in pipeline.warehouses:
        build(pipeline, warehouse)
        assert_incremental_equals_full_refresh(pipeline, warehouse)

    # 2. the rest of the backlog (older events than the windows built), events for the evening
    #    before (ten hours older than anything built) and one event from a minute in the
    #    future (valid: within the contract's skew)
    pipeline.send(held_back)
    late = pipeline.simulate(*LATE)
    now = int(time.time())
    user = load_users()[0]
    future = {"timestamp": now + 60, "id": user.id, "antenna_id": "a0000000-0000-0000-0000-00000000000f",
              "bytes": 7, "app": "FUTURE"}  # fmt: skip
    produce(pipeline.settings, pipeline.topic, [(0, json.dumps(future).encode())])
    pipeline.ingest()
    for warehouse in pipeline.warehouses:
        build(pipeline, warehouse)
        assert_incremental_equals_full_refresh(pipeline, warehouse)

    # 3. after the future event was built, older events still fold in
    later = pipeline.simulate(
        "--start", "2026-11-20T03:00:00Z", "--duration", "20m", "--count", "3000", "--seed", "23"
    )
    pipeline.ingest()
    in_the_future = ledger_module.Ledger()
    in_the_future.add_event(now + 60, user.id, str(future["antenna_id"]), 7, "FUTURE")
    expected = merged(backlog, late, later, in_the_future)
    for warehouse in pipeline.warehouses:
        build(pipeline, warehouse)
        assert_incremental_equals_full_refresh(pipeline, warehouse)
        assert_marts_equal_ledger(pipeline, warehouse, expected)


def test_builds_while_ingesting_pass_their_tests_and_end_exact(pipeline: Pipeline) -> None:
    """The simulator streams for about 20 s while both ingestors run; `dbt build` runs over
    and over meanwhile on both targets: no build fails a data test (no false alarm), and
    once ingestion has caught up one more build equals a full refresh and the ledger."""
    ledger_path = pipeline.tmp / "stream-ledger.json"
    simulator = subprocess.Popen(
        [sys.executable, "-m", "antenna_elt.cli", "simulate", "--topic", pipeline.topic,
         "--start", "2026-11-21T00:00:00Z", "--duration", "2h", "--count", "12000", "--rate", "600",
         "--seed", "31", "--late-share", "0.1", "--late-max", "90m", "--duplicate-share", "0.02",
         "--ledger", str(ledger_path), "--quiet"],
        cwd=ROOT,
    )  # fmt: skip
    ingestors = [
        subprocess.Popen(
            [sys.executable, "-m", "antenna_elt.cli", "ingest", "postgres", "--topic", pipeline.topic,
             "--schema", pipeline.raw_schema, "--group", pipeline.pg_group, "--max-latency", "0.3"],
            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        ),
        subprocess.Popen(
            [sys.executable, "-m", "antenna_elt.cli", "ingest", "lake", "--topic", pipeline.topic,
             "--lake", pipeline.lake.as_uri(), "--group", pipeline.lake_group, "--max-latency", "1"],
            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        ),
    ]  # fmt: skip
    builds = 0
    try:
        while simulator.poll() is None:
            for warehouse in pipeline.warehouses:
                build(pipeline, warehouse)  # raises with dbt's output on any failed test
                builds += 1
        assert simulator.returncode == 0
    finally:
        for proc in ingestors:
            proc.terminate()
        for proc in ingestors:
            proc.wait(timeout=60)
        if simulator.poll() is None:
            simulator.kill()
    assert builds >= 2, "builds ran while events streamed"
    pipeline.ingest()
    ledger = ledger_module.load(ledger_path)
    for warehouse in pipeline.warehouses:
        build(pipeline, warehouse)
        assert_incremental_equals_full_refresh(pipeline, warehouse)
        assert_marts_equal_ledger(pipeline, warehouse, ledger)


def hour_built(pipeline: Pipeline, warehouse: Warehouse, seed: str) -> ledger_module.Ledger:
    """An hour of events with re-sent copies (2026-11-21 00:00), ingested and built."""
    ledger = pipeline.simulate(
        "--start", "2026-11-21T00:00:00Z", "--duration", "1h", "--count", "6000", "--seed", seed,
        "--duplicate-share", "0.02",
    )  # fmt: skip
    pipeline.ingest()
    build(pipeline, warehouse)
    return ledger


def test_two_builds_at_once_take_turns_and_add_every_increment_once(pipeline: Pipeline) -> None:
    """Two `dbt run`s of the PostgreSQL incremental models at once (two runners, a runner
    and the speed DAG, or an analyst's build beside them), over an increment with re-sent
    and late events, made to meet at `fct_usage_windowed`: the test holds that table locked
    until both builds wait on it, then lets them go. Each model's builds take turns (the
    second reads what the first built), so no increment is added twice and no bucket keeps
    both builds' rows: both succeed, every data test passes on all history, and the marts
    equal a full refresh and the ledger. Before, both rebuilt the same windows at once and
    left them twice.

    Only the incremental models: dbt swaps views and tables in through a fixed
    `<name>__dbt_backup`, so a second build at once fails on those (loudly, nothing lost)."""
    warehouse = pipeline.postgres
    first = hour_built(pipeline, warehouse, seed="31")
    second = pipeline.simulate(
        "--start", "2026-11-21T00:30:00Z", "--duration", "1h", "--count", "6000", "--seed", "32",
        "--duplicate-share", "0.05", "--late-share", "0.2", "--late-max", "60m",
    )  # fmt: skip
    pipeline.ingest()
    failures: list[BaseException] = []

    def one_build(instance: str) -> None:
        try:
            dbt(pipeline, warehouse, "run", "-s", "config.materialized:incremental",
                instance=instance)  # fmt: skip
        except BaseException as failure:  # reported by the test's thread
            failures.append(failure)

    gated = f"{warehouse.schema}_marts.fct_usage_windowed"
    with psycopg.connect(pipeline.settings.pg_conninfo) as gate:
        gate.execute(f"lock table {gated} in access exclusive mode")
        threads = [threading.Thread(target=one_build, args=(f"-{i}",)) for i in (1, 2)]
        for thread in threads:
            thread.start()
        deadline = time.monotonic() + 120
        waiting = 0
        while waiting < 2:
            assert time.monotonic() < deadline, "both builds reach fct_usage_windowed in 120 s"
            assert all(thread.is_alive() for thread in threads), failures
            time.sleep(0.2)
            (waiting,) = query_postgres(
                pipeline.settings.pg_conninfo,
                "select count(*) from pg_stat_activity where wait_event_type = 'Lock'"
                f" and query ilike '%{warehouse.schema}%'",
            )[0]
        gate.rollback()  # both wait: let them go
    for thread in threads:
        thread.join()
    assert not failures, "\n".join(str(failure) for failure in failures)
    # the one table mart read from incremental models: from what the two builds left
    dbt(pipeline, warehouse, "run", "-s", "fct_devices_active_recent")
    assert failed_tests(pipeline, warehouse) == set()
    assert_incremental_equals_full_refresh(pipeline, warehouse)
    assert_marts_equal_ledger(pipeline, warehouse, merged(first, second))


def test_copies_of_events_built_before_count_as_copies_not_as_events(pipeline: Pipeline) -> None:
    """A producer's retries that arrive after the build that added their events: on
    PostgreSQL, where the de-duplicated events are an additive table, each such event gains a
    copy and keeps its first copy's ingest_seq and ingestion time, and no mart counts it
    twice."""
    postgres = pipeline.postgres
    first = hour_built(pipeline, postgres, seed="41")
    table = f"{postgres.schema}_intermediate.{DEDUPLICATED}"
    columns = "extract(epoch from event_at), device_id, antenna_id, bytes, app"
    sql = f"select {columns}, copies_received, ingest_seq, first_ingested_at from {table}"

    def held() -> dict[tuple[Any, ...], tuple[Any, ...]]:
        rows = query_postgres(pipeline.settings.pg_conninfo, sql)
        return {(int(r[0]), *r[1:5]): tuple(r[5:]) for r in rows}

    before = held()
    sent = topic_messages(pipeline.settings, pipeline.topic)
    retried = [m for m in sent if not isinstance(parse(m.value), str)][::7]
    assert len(retried) > 800
    # the retries, and new events in the same windows and beyond, in one increment
    second = pipeline.simulate(
        "--start", "2026-11-21T00:30:00Z", "--duration", "1h", "--count", "6000", "--seed", "42"
    )
    pipeline.send(retried)
    pipeline.ingest()
    build(pipeline, postgres)

    after = held()
    copies = Counter(parse(m.value) for m in retried)
    assert len(after) == len(before) + second.counters["events"]
    for event, (copies_before, seq, first_ingested) in before.items():
        assert after[event] == (copies_before + copies[event], seq, first_ingested), event
    assert_incremental_equals_full_refresh(pipeline, postgres)
    assert_marts_equal_ledger(pipeline, postgres, merged(first, second))


def add_a_byte_to_one_bytes_row(pipeline: Pipeline, warehouse: Warehouse, where: str = "") -> None:
    """A wrong row in `bytes` (PostgreSQL): one antenna total (`where`: among those) one
    byte too high."""
    marts = f"{warehouse.schema}_marts"
    with psycopg.connect(pipeline.settings.pg_conninfo, autocommit=True) as conn:
        changed = conn.execute(
            f"update {marts}.bytes set value = value + 1 where ctid = (select ctid from"
            f" {marts}.bytes where type = 'antenna_bytes_total'{where} limit 1)"
        ).rowcount
    assert changed == 1


def test_a_wrong_windowed_row_fails_the_data_tests(pipeline: Pipeline) -> None:
    pipeline.simulate(
        "--start", "2026-11-22T00:00:00Z", "--duration", "1h", "--count", "3000", "--seed", "41"
    )
    pipeline.ingest()
    warehouse = pipeline.postgres
    build(pipeline, warehouse)
    add_a_byte_to_one_bytes_row(pipeline, warehouse)
    proc = dbt(pipeline, warehouse, "test", check=False)
    assert proc.returncode == 1
    failed = sorted(
        line.split(" FAIL ")[1].split()[1]
        for line in proc.stdout.splitlines()
        if " FAIL " in line and " of " in line
    )
    assert failed == ["assert_bytes_equals_staged_events"], proc.stdout[-3000:]


def failed_tests(pipeline: Pipeline, warehouse: Warehouse, scope: str = "all") -> set[str]:
    """`dbt test` in a test scope: the names of the data tests that failed."""
    env = warehouse.env
    proc = dbt(pipeline, warehouse, "test", "--exclude", "resource_type:unit_test", check=False,
               variables={"ingest_test_scope": scope})  # fmt: skip
    results = json.loads(
        (
            pipeline.tmp / "dbt-target" / env["ANTENNA_ELT_DBT_SCHEMA"] / "run_results.json"
        ).read_text()
    )
    errors = [r["unique_id"] for r in results["results"] if r["status"] == "error"]
    assert not errors, proc.stdout[-3000:]
    return {r["unique_id"].split(".")[2] for r in results["results"] if r["status"] == "fail"}


def test_touched_scope_generic_tests_check_the_increment_whatever_its_event_time(
    pipeline: Pipeline,
) -> None:
    """In the 'touched' scope (what the runner and the speed DAG run), the generic tests
    (not_null, unique, non_negative, ...) read the buckets the last build touched, not the
    history: a wrong row in the new increment fails them, including a re-ingested offset
    whose event is hours older than anything new, while a wrong row in a window nothing
    touched is left to the full scope (the default), which still finds it."""
    pipeline.simulate(
        "--start", "2026-11-22T00:00:00Z", "--duration", "1h", "--count", "3000", "--seed", "43"
    )
    pipeline.ingest()
    warehouse = pipeline.postgres
    build(pipeline, warehouse)
    pipeline.simulate(
        "--start", "2026-11-22T05:00:00Z", "--duration", "10m", "--count", "1000", "--seed", "44"
    )
    pipeline.ingest()
    raw, marts = pipeline.raw_schema, f"{warehouse.schema}_marts"
    with psycopg.connect(pipeline.settings.pg_conninfo, autocommit=True) as conn:
        # an offset landed twice: the copy is new, its event from the first hour
        assert (
            conn.execute(
                f"insert into {raw}.device_usage (event_time, id, antenna_id, bytes, app, kafka_topic,"
                " kafka_partition, kafka_offset, ingested_at)"
                " select event_time, id, antenna_id, bytes, app, kafka_topic, kafka_partition,"
                f" kafka_offset, now() from {raw}.device_usage where event_time >="
                " '2026-11-22T00:30:00Z' and event_time < '2026-11-22T00:35:00Z' limit 1"
            ).rowcount
            == 1
        )
        # a doubled mart row in the first window, which no new event touches
        assert (
            conn.execute(
                f"insert into {marts}.fct_antenna_bandwidth_windowed select * from"
                f" {marts}.fct_antenna_bandwidth_windowed where window_epoch = (select"
                f" min(window_epoch) from {marts}.fct_antenna_bandwidth_windowed) limit 1"
            ).rowcount
            == 1
        )
    dbt(pipeline, warehouse, "run")
    with psycopg.connect(pipeline.settings.pg_conninfo, autocommit=True) as conn:
        # a doubled mart row in a window the new events touched (in `bytes`: on PostgreSQL
        # the additive facts' unique indexes refuse a second row for a key)
        assert (
            conn.execute(
                f"insert into {marts}.bytes select * from {marts}.bytes"
                """ where "timestamp" >= '2026-11-22T05:00:00' limit 1"""
            ).rowcount
            == 1
        )
    touched = {
        "unique_combination_of_columns_stg_raw__device_usage_kafka_topic__kafka_partition__kafka_offset",
        "unique_combination_of_columns_bytes__timestamp___id__type",
    }
    untouched = (
        "unique_combination_of_columns_fct_antenna_bandwidth_windowed_window_epoch__antenna_id"
    )
    assert failed_tests(pipeline, warehouse, "touched") == touched
    assert touched | {untouched} <= failed_tests(pipeline, warehouse)


BUILD_WITHOUT_TESTS = ("build", "--exclude", "resource_type:test", "resource_type:unit_test")
"""What `antenna-elt run`'s speed cycle runs (its tests run beside it)."""


def test_the_untested_scope_checks_every_build_since_the_last_tests(pipeline: Pipeline) -> None:
    """`antenna-elt run` publishes the marts with builds that run no tests, and runs `dbt
    test` beside them in the 'untested' scope: each `dbt test` checks every bucket touched by
    the builds since the last one, however many ran in between. A wrong row left in a window
    that a build two builds back touched is found (the 'touched' scope, which checks the
    last build only, misses it), reported by one `dbt test`, not by every later one. After a
    full refresh of a model, the next one checks all of its buckets again."""
    warehouse = pipeline.postgres
    for hour, seed in (("00", "61"), ("02", "62")):
        pipeline.simulate(
            "--start", f"2026-11-24T{hour}:00:00Z", "--duration", "1h", "--count", "3000",
            "--seed", seed, "--duplicate-share", "0.02",
        )  # fmt: skip
        pipeline.ingest()
        dbt(pipeline, warehouse, *BUILD_WITHOUT_TESTS)
        if hour == "00":
            assert failed_tests(pipeline, warehouse, "untested") == set()
    add_a_byte_to_one_bytes_row(
        pipeline, warehouse, """ and "timestamp" >= '2026-11-24T02:00:00'"""
    )
    pipeline.simulate(
        "--start", "2026-11-24T04:00:00Z", "--duration", "1h", "--count", "3000", "--seed", "63"
    )
    pipeline.ingest()
    dbt(pipeline, warehouse, *BUILD_WITHOUT_TESTS)
    assert failed_tests(pipeline, warehouse, "touched") == set()
    assert failed_tests(pipeline, warehouse, "untested") == {"assert_bytes_equals_staged_events"}
    assert failed_tests(pipeline, warehouse, "untested") == set()
    # the full scope still finds it
    assert failed_tests(pipeline, warehouse) == {"assert_bytes_equals_staged_events"}
    # the scope is a `dbt test`'s: a build in it is refused in one line naming the fix
    proc = dbt(pipeline, warehouse, "build", "-s", "bytes", check=False,
               variables={"ingest_test_scope": "untested"})  # fmt: skip
    assert proc.returncode != 0
    assert "ingest_test_scope 'untested' is for `dbt test`" in proc.stdout, proc.stdout[-2000:]
    # and a scope misspelt, which checked something else before
    proc = dbt(pipeline, warehouse, "test", "-s", "bytes", check=False,
               variables={"ingest_test_scope": "touch"})  # fmt: skip
    assert proc.returncode != 0
    assert "ingest_test_scope is 'touch': use all (the default), touched or untested" in proc.stdout
    # a full refresh rebuilds every bucket: the next untested tests check all of them, even
    # with an incremental build in between (before, only the buckets since the last tests)
    dbt(pipeline, warehouse, "run", "--full-refresh", "-s", "bytes")
    assert failed_tests(pipeline, warehouse, "untested") == set()  # the refresh mended it
    dbt(pipeline, warehouse, "run", "--full-refresh", "-s", "bytes")
    add_a_byte_to_one_bytes_row(  # as if the refresh (an edited model) had built it wrong
        pipeline, warehouse, """ and "timestamp" < '2026-11-24T01:00:00'"""
    )
    pipeline.simulate(
        "--start", "2026-11-24T06:00:00Z", "--duration", "1h", "--count", "3000", "--seed", "64"
    )
    pipeline.ingest()
    dbt(pipeline, warehouse, *BUILD_WITHOUT_TESTS)
    assert failed_tests(pipeline, warehouse, "untested") == {"assert_bytes_equals_staged_events"}


def test_a_data_test_compiled_before_a_build_commits_compares_the_built_high(
    pipeline: Pipeline,
) -> None:
    """A data test of the PostgreSQL marts is compiled, then a build of more events into the
    same windows commits before the test's query runs (the runner's tests beside its builds,
    two schedulers, an analyst's build beside a schedule). The test compares each mart with
    the events below the high the mart holds when its query runs (read by the query itself),
    and passes. Before, it compared the mart's new totals with the events below the high it
    was compiled with: false failures, with no wrong row anywhere."""
    warehouse = pipeline.postgres
    pipeline.simulate(
        "--start", "2026-11-24T00:00:00Z", "--duration", "1h", "--count", "4000", "--seed", "65",
        "--duplicate-share", "0.02",
    )  # fmt: skip
    pipeline.ingest()
    build(pipeline, warehouse)
    pipeline.simulate(
        "--start", "2026-11-24T00:00:00Z", "--duration", "1h", "--count", "4000", "--seed", "66",
        "--duplicate-share", "0.02",
    )  # fmt: skip
    pipeline.ingest()
    dbt(pipeline, warehouse, "compile", "--select", "test_type:singular",
        variables={"ingest_test_scope": "touched"})  # fmt: skip
    dbt(pipeline, warehouse, *BUILD_WITHOUT_TESTS)
    compiled = sorted(
        (pipeline.tmp / "dbt-target" / warehouse.schema / "compiled").rglob("tests/*.sql")
    )
    assert len(compiled) == 14, compiled  # every singular test of the PostgreSQL target
    for path in compiled:
        if path.name != "assert_no_unknown_devices.sql":  # it warns: the simulator's strangers
            assert query_postgres(pipeline.settings.pg_conninfo, path.read_text()) == [], path.name
    assert failed_tests(pipeline, warehouse) == set()


def lake_registry(pipeline: Pipeline) -> dict[str, int]:
    """The DuckDB warehouse's registered lake files (lake-relative) and their ingest_seq."""
    found = query_duckdb(
        pipeline.duckdb.env["ANTENNA_ELT_DUCKDB_PATH"],
        f"select file_path, ingest_seq from {pipeline.duckdb.schema}.lake_files",
    )
    root = str(pipeline.lake)
    return {str(path).removeprefix(root + "/"): int(seq) for path, seq in found}


def lake_compact(pipeline: Pipeline, *args: str) -> str:
    proc = run_cli("lake", "compact", "--lake", pipeline.lake.as_uri(), *args)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_compaction_between_duckdb_builds_keeps_the_marts_exact_and_rebuilds_nothing(
    pipeline: Pipeline,
) -> None:
    """A 3-hour backlog lands as many small files; a build; the closed hours are compacted
    (their replaced files still on disk for the grace period); a build reads the compacted
    files only, counts none of their rows as newly ingested, and equals a full refresh and
    the ledger; late events for a compacted hour add a file and are compacted again; the
    replaced files are deleted; every build stays exact."""
    duck = pipeline.duckdb
    backlog = pipeline.simulate(
        "--start", "2026-11-23T00:00:00Z", "--duration", "3h", "--count", "9000", "--seed", "51",
        "--duplicate-share", "0.02",
    )  # fmt: skip
    pipeline.ingest(batch_size=500, compact=False)
    build(pipeline, duck)
    before = lake_registry(pipeline)
    assert len(before) > 20  # many small files

    out = lake_compact(pipeline)
    assert out.count("compacted hour 2026-11-23T0") == 2  # hours 00 and 01 closed, 02 open
    build(pipeline, duck)
    after = lake_registry(pipeline)
    compacted = {p: seq for p, seq in after.items() if is_compacted(p)}
    assert len(compacted) == 2
    # no replaced file registered; each compacted file keeps the largest number of its inputs
    # (all seen by the previous build), so the build's high did not move: nothing rebuilt
    assert set(after) - set(compacted) < set(before)
    assert max(after.values()) == max(before.values())
    assert_incremental_equals_full_refresh(pipeline, duck)
    assert_marts_equal_ledger(pipeline, duck, backlog)

    # late events for compacted hour 00: a new file, a new manifest version, compacted again
    late = pipeline.simulate(
        "--start", "2026-11-23T00:10:00Z", "--duration", "20m", "--count", "1500", "--seed", "52"
    )
    pipeline.ingest()
    build(pipeline, duck)
    assert_incremental_equals_full_refresh(pipeline, duck)
    assert_marts_equal_ledger(pipeline, duck, merged(backlog, late))

    # the replaced files deleted: nothing changes for the marts
    lake_compact(pipeline, "--compact-grace", "0")
    build(pipeline, duck)
    assert_incremental_equals_full_refresh(pipeline, duck)
    assert_marts_equal_ledger(pipeline, duck, merged(backlog, late))
