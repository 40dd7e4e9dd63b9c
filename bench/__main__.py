"""`make bench`: every figure from one run, as ratios against baselines of the same run.

1. PostgreSQL ingest throughput end to end (`antenna-elt ingest postgres --until-caught-up`
   as a process) against the ceiling of consuming the same topic with the same client
   (ANTENNA_ELT_KAFKA_CLIENT, librdkafka by default) and doing nothing, at 1M events; peak
   memory of the ingestor (its process tree) at 1M and 5M events. The lake ingestor (`antenna-elt ingest lake --until-caught-up`) on the same
   1M-event topic against the same ceiling, with the files it leaves per hour.
   With BENCH_PARTS including `spark`: `ingest spark` (local[2]) into the lake and into
   PostgreSQL next to `ingest lake` and `ingest postgres`, on one topic, against the same
   ceiling, with each one's start-up time (bench/spark.py).
2. dbt: models built from scratch (`dbt seed` + `dbt run --full-refresh`) and incrementally
   after one more hour of events, with 1M and 10M events of history, on PostgreSQL and
   DuckDB; how the incremental time grows with history; and the data tests' time (they
   scan the whole history by design).
3. `antenna-elt run` while the simulator streams at 10k events/s over 1M and 10M events of
   history: event-to-mart latency (p50, p95), speed-cycle durations, ingest lag, peak
   memory of the runner's process tree (bench/runner.py).
4. fuzz: the differential fuzz test with 100,000 hostile messages through both ingestors
   (bench/fuzz.py): it holds (no crash, every offset once, the sinks agree), and its time.
5. compact: lake compaction (bench/compaction.py): a lake of BENCH_COMPACT_EVENTS events
   (default 10,000,000) in 24 closed hours of 180 small files each, as the lake ingestor
   leaves them; files per closed hour before and after compaction, its time, and a DuckDB
   scan of the lake before and after (full aggregate and one hour).
6. clients (bench/clients.py): for each Kafka client (kafka-python, librdkafka) on one topic
   of BENCH_EVENTS: the consume-only ceiling, `ingest postgres` and `ingest lake` events/s
   and their ratio to that client's ceiling, each ingestor's peak memory; and the time
   from an event to its visible raw row (p50, p95, p99) while `ingest postgres` runs live
   under a stream of BENCH_LATENCY_RATE events/s (10k) for BENCH_LATENCY_SECONDS (60).
7. soak (bench/soak.py; only with BENCH_PARTS=soak: an hour): both ingestors at default
   settings under BENCH_SOAK_RATE events/s (5k) for BENCH_SOAK_SECONDS (3600): is the lag
   bounded and memory flat (lag and RSS sampled every BENCH_SOAK_SAMPLE seconds).

Sizes can be lowered for a quick look: BENCH_EVENTS=200000 BENCH_BIG_EVENTS=500000
BENCH_HISTORY=200000,1000000 BENCH_FUZZ_MESSAGES=20000 make bench; BENCH_PARTS=dbt runs
only the dbt part, BENCH_PARTS=compact only compaction. Results are also written to
bench/results/.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

from antenna_elt.dbt import run_dbt
from antenna_elt.devstack import stack
from antenna_elt.settings import PROJECT_ROOT, load_settings
from bench.fuzz import bench_fuzz
from bench.ingest_postgres import consume_only, ingest_postgres
from bench.lake import bench_lake
from bench.spark import bench_ingestors

RESULTS = PROJECT_ROOT / "bench" / "results"


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", flush=True)


def simulate(topic: str, count: int) -> float:
    started = time.monotonic()
    subprocess.run(
        [
            sys.executable, "-m", "antenna_elt.cli", "simulate", "--topic", topic, "--count", str(count),
            "--duration", f"{max(1, count // 36_000)}h", "--start", "2026-01-01T00:00:00Z", "--quiet",
            "--ledger", str(RESULTS / f"{topic}-ledger.json"),
        ],
        check=True,
        cwd=PROJECT_ROOT,
    )  # fmt: skip
    return time.monotonic() - started


def create_topic(settings: Any, topic: str) -> None:
    from kafka.admin import KafkaAdminClient, NewTopic

    admin = KafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap_servers)
    admin.create_topics([NewTopic(topic, 3, 1)])
    admin.close()


def delete_topic(settings: Any, topic: str) -> None:
    from kafka.admin import KafkaAdminClient

    admin = KafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap_servers)
    admin.delete_topics([topic])
    admin.close()


def drop_schemas(settings: Any, prefix: str) -> None:
    import psycopg
    from psycopg import sql

    with psycopg.connect(settings.pg_conninfo, autocommit=True) as conn:
        for (name,) in conn.execute(
            "select nspname from pg_namespace where nspname like %s", (f"{prefix}%",)
        ).fetchall():
            conn.execute(sql.SQL("drop schema {} cascade").format(sql.Identifier(name)))


def bench_ingest(
    settings: Any, events: int, big_events: int
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Both ingestors on the same topics; the lake ingestor at `events` only."""
    out: dict[str, Any] = {}
    lake_out: dict[str, Any] = {}
    for count in [n for n in (events, big_events) if n]:
        topic = f"bench-{uuid.uuid4().hex[:6]}"
        schema = f"bench_raw_{uuid.uuid4().hex[:6]}"
        lake = RESULTS / f"lake-{topic}"
        create_topic(settings, topic)
        try:
            log(f"producing {count:,} events to {topic}")
            produce_s = simulate(topic, count)
            ceiling = None
            if count == events:
                log(f"consume-only ceiling ({settings.kafka_client}, same settings, same topic)")
                ceiling = consume_only(
                    settings.kafka_bootstrap_servers, topic, count, settings.kafka_client
                )
            log(f"ingest postgres of {count:,} events")
            result = ingest_postgres(topic, schema, dict(os.environ))
            rate = count / result["seconds"]
            entry = {
                "events": count,
                "produce_events_per_s": round(count / produce_s),
                "ingest_events_per_s": round(rate),
                "ingest_seconds": round(result["seconds"], 1),
                "peak_rss_mib": round(result["peak_rss_mib"], 1),
            }
            if ceiling:
                entry["consume_only_events_per_s"] = round(ceiling)
                entry["ratio_to_ceiling"] = round(rate / ceiling, 2)
            out[str(count)] = entry
            log(json.dumps(entry))
            if ceiling:
                log(f"ingest lake of {count:,} events (same topic, same ceiling)")
                lake_out[str(count)] = bench_lake(settings, topic, count, lake, ceiling)
                log(json.dumps(lake_out[str(count)]))
        finally:
            delete_topic(settings, topic)
            drop_schemas(settings, schema)
            subprocess.run(["rm", "-rf", str(lake)], check=False)
    sizes = list(out)
    out["peak_rss_ratio_big_to_small"] = round(
        out[sizes[-1]]["peak_rss_mib"] / out[sizes[0]]["peak_rss_mib"], 2
    )
    return out, lake_out


GENERATE_PG = """
insert into {schema}.device_usage (event_time, id, antenna_id, bytes, app, kafka_topic, kafka_partition, kafka_offset, ingested_at)
select to_timestamp({start} + (g * 3600::bigint * {hours}) / {count}),
       ('00000000-0000-0000-0000-0000000000' || lpad((1 + g % 22)::text, 2, '0'))::uuid,
       ('00000000-0000-0000-0000-0000000001' || lpad((g % 5)::text, 2, '0'))::uuid,
       (g * 7919) % 400, (array['FACETIME','SKYPE','FACEBOOK','WHATSAPP'])[1 + g % 4],
       'bench', (g % 3)::int, g, now()
from generate_series({first}::bigint, {last}::bigint) g
"""


def pg_history(settings: Any, schema: str, first: int, last: int, count: int, hours: int) -> None:
    import psycopg

    from antenna_elt.sinks.postgres import DDL

    with psycopg.connect(settings.pg_conninfo, autocommit=True) as conn:
        conn.execute(DDL.format(schema=schema))
        conn.execute(
            GENERATE_PG.format(
                schema=schema, start=1_767_225_600, hours=hours, count=count, first=first, last=last
            )
        )
        conn.execute(f"analyze {schema}.device_usage")


def duckdb_history(lake: Path, first: int, last: int, count: int, hours: int) -> None:
    """Events `first..last` as Parquet in the lake ingestor's layout: one folder per event
    hour (year=/month=/day=/hour=), a new file per call, as a later batch would add."""
    import duckdb

    (lake / "device_usage").mkdir(parents=True, exist_ok=True)
    with duckdb.connect() as conn:
        conn.execute(
            f"""copy (
                select to_timestamp(1767225600 + (g * 3600 * {hours}) // {count}) as event_time,
                       '00000000-0000-0000-0000-0000000000' || lpad(cast(1 + g % 22 as varchar), 2, '0') as id,
                       '00000000-0000-0000-0000-0000000001' || lpad(cast(g % 5 as varchar), 2, '0') as antenna_id,
                       cast((g * 7919) % 400 as bigint) as bytes,
                       (['FACETIME','SKYPE','FACEBOOK','WHATSAPP'])[1 + g % 4] as app,
                       'bench' as kafka_topic, cast(g % 3 as integer) as kafka_partition, g as kafka_offset,
                       now() as ingested_at,
                       strftime(event_time at time zone 'UTC', '%Y') as year,
                       strftime(event_time at time zone 'UTC', '%m') as month,
                       strftime(event_time at time zone 'UTC', '%d') as day,
                       strftime(event_time at time zone 'UTC', '%H') as hour
                from range({first}, {last} + 1) t(g)
            ) to '{lake}/device_usage' (
                format parquet, partition_by (year, month, day, hour),
                filename_pattern 'bench+{first}+{{i}}', overwrite_or_ignore
            )"""
        )


def timed_build(
    target: str, env: dict[str, str], raw_schema: str, *extra: str
) -> tuple[float, float]:
    """Seconds of `dbt run` (the models) and of `dbt test` (data tests over the whole
    history) after it."""
    common = ["--target", target, "--vars", f"{{raw_schema: {raw_schema}}}"]
    started = time.monotonic()
    run_dbt(["seed", *common], env=env)
    run_dbt(["run", *common, *extra], env=env)
    models = time.monotonic() - started
    started = time.monotonic()
    run_dbt(["test", *common, "--exclude", "test_type:unit"], env=env)
    return models, time.monotonic() - started


def bench_dbt(settings: Any, histories: list[int]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for target in os.environ.get("BENCH_TARGETS", "postgres,duckdb,spark").split(","):
        for history in histories:
            tag = uuid.uuid4().hex[:6]
            raw_schema, schema = f"bench_raw_{tag}", f"bench_dbt_{tag}"
            lake = RESULTS / f"lake-{tag}"
            hours = max(2, history // 36_000)
            step = history // hours  # one hour of events
            env = {
                "ANTENNA_ELT_DBT_SCHEMA": schema,
                "ANTENNA_ELT_LAKE": lake.as_uri(),
                "ANTENNA_ELT_DUCKDB_PATH": str(RESULTS / f"warehouse-{tag}.duckdb"),
                "ANTENNA_ELT_SPARK_DBT_DIR": str(RESULTS / f"spark-dbt-{tag}"),
            }
            log(f"dbt {target}: {history:,} events of history ({hours} hours)")
            try:
                if target == "postgres":
                    pg_history(settings, raw_schema, 0, history - 1, history + step, hours + 1)
                else:
                    duckdb_history(lake, 0, history - 1, history + step, hours + 1)
                full = timed_build(target, env, raw_schema, "--full-refresh")
                # one more hour of events arrives, then an incremental build
                if target == "postgres":
                    pg_history(
                        settings, raw_schema, history, history + step - 1, history + step, hours + 1
                    )
                else:
                    duckdb_history(lake, history, history + step - 1, history + step, hours + 1)
                incremental = timed_build(target, env, raw_schema)
            finally:
                if target == "postgres":
                    drop_schemas(settings, raw_schema)
                    drop_schemas(settings, schema)
                subprocess.run(
                    ["rm", "-rf", str(lake), env["ANTENNA_ELT_DUCKDB_PATH"],
                     env["ANTENNA_ELT_SPARK_DBT_DIR"]],
                    check=False,
                )  # fmt: skip
            entry = {
                "full_run_s": round(full[0], 1),
                "incremental_run_s": round(incremental[0], 1),
                "data_tests_s": round(incremental[1], 1),
            }
            out[f"{target}/{history}"] = entry
            log(f"{target} {history:,}: {json.dumps(entry)}")
        small, big = (
            out[f"{target}/{h}"]["incremental_run_s"] for h in (histories[0], histories[-1])
        )
        out[f"{target}/incremental_growth_{histories[-1] // histories[0]}x_history"] = round(
            big / small, 2
        )
    return out


def bench_spark_ingest(settings: Any, events: int) -> dict[str, Any]:
    """`ingest spark` and the Python ingestors on one topic of `events` messages."""
    topic = f"bench-{uuid.uuid4().hex[:6]}"
    schema = f"bench_spark_{uuid.uuid4().hex[:6]}"
    work = RESULTS / f"spark-{topic}"
    create_topic(settings, topic)
    try:
        log(f"producing {events:,} events to {topic}")
        simulate(topic, events)
        log(f"consume-only ceiling ({settings.kafka_client}, same settings, same topic)")
        ceiling = consume_only(
            settings.kafka_bootstrap_servers, topic, events, settings.kafka_client
        )
        log("ingest lake, ingest spark, ingest postgres, ingest spark --sink postgres")
        out = {"consume_only_events_per_s": round(ceiling)}
        out.update(bench_ingestors(topic, events, ceiling, work, schema, dict(os.environ)))
        log(json.dumps(out))
        return out
    finally:
        delete_topic(settings, topic)
        drop_schemas(settings, schema)
        subprocess.run(["rm", "-rf", str(work)], check=False)


def main() -> int:
    RESULTS.mkdir(parents=True, exist_ok=True)
    settings = load_settings()
    stack.ensure_up(settings)
    events = int(os.environ.get("BENCH_EVENTS", "1000000"))
    big = int(os.environ.get("BENCH_BIG_EVENTS", "5000000"))
    histories = [int(x) for x in os.environ.get("BENCH_HISTORY", "1000000,10000000").split(",")]
    parts = os.environ.get("BENCH_PARTS", "ingest,clients,spark,dbt,run,fuzz,compact").split(",")
    results: dict[str, Any] = {
        "machine": {
            "cpus": os.cpu_count(),
            "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
    }
    if "ingest" in parts:
        results["ingest_postgres"], results["ingest_lake"] = bench_ingest(settings, events, big)
    if "clients" in parts:
        from bench.clients import bench_clients

        results["clients"] = bench_clients(
            settings,
            events,
            int(os.environ.get("BENCH_LATENCY_RATE", "10000")),
            int(os.environ.get("BENCH_LATENCY_SECONDS", "60")),
        )
    if "spark" in parts:
        results["ingest_spark"] = bench_spark_ingest(settings, events)
    if "dbt" in parts:
        results["dbt"] = bench_dbt(settings, histories)
    if "run" in parts:
        from bench.runner import bench_runner

        run_histories = os.environ.get("BENCH_RUN_HISTORY", "1000000,10000000").split(",")
        results["run"] = bench_runner(
            settings,
            [int(h) for h in run_histories],
            int(os.environ.get("BENCH_RUN_RATE", "10000")),
            int(os.environ.get("BENCH_RUN_SECONDS", "120")),
            os.environ.get("BENCH_RUN_TESTS", "beside,in-build").split(","),
        )
    if "fuzz" in parts:
        messages = int(os.environ.get("BENCH_FUZZ_MESSAGES", "100000"))
        log(f"differential fuzz: {messages:,} hostile messages through both ingestors")
        results["fuzz"] = bench_fuzz(messages)
        log(json.dumps(results["fuzz"]))
    if "compact" in parts:
        from bench.compaction import bench_compaction

        compact_events = int(os.environ.get("BENCH_COMPACT_EVENTS", "10000000"))
        log(f"lake compaction: {compact_events:,} events in 24 closed hours of small files")
        work = RESULTS / f"compaction-{uuid.uuid4().hex[:6]}"
        try:
            results["compaction"] = bench_compaction(compact_events, work)
        finally:
            subprocess.run(["rm", "-rf", str(work)], check=False)
        log(json.dumps(results["compaction"]))
    if "soak" in parts:  # an hour by default: only when asked for
        from bench.soak import bench_soak

        results["soak"] = bench_soak(
            settings,
            int(os.environ.get("BENCH_SOAK_RATE", "5000")),
            int(os.environ.get("BENCH_SOAK_SECONDS", "3600")),
            float(os.environ.get("BENCH_SOAK_SAMPLE", "10")),
        )
    path = RESULTS / f"bench-{time.strftime('%Y%m%dT%H%M%S')}.json"
    path.write_text(json.dumps(results, indent=2))
    print(json.dumps(results, indent=2))
    log(f"results in {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
