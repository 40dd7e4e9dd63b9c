"""Benchmark (BENCH_PARTS=clients): both Kafka clients side by side, in one run.

For each client (kafka-python, librdkafka), on one topic of BENCH_EVENTS messages:

- the consume-only ceiling: a subscribed consumer through the same adapter, settings and
  poll size as the ingestors, doing nothing with the messages; and a second one with the
  settings that bound the consumer's memory (fetch sizes, librdkafka's pre-fetch queue)
  left to the library's defaults, which those settings cannot lower: a bound that
  throttles consuming lowers the first ceiling and the ingestors alike, so only the
  second shows it (librdkafka's ``queued.min.messages`` of 20,000 cost 3/4 of its rate
  and the ratios did not move);
- `antenna-elt ingest postgres --until-caught-up` and `ingest lake --until-caught-up` with
  that client, at default settings: events/s, their ratio to that client's ceiling, and
  the peak resident memory of the ingestor (its process tree: with kafka-python, its
  writer process and multiprocessing's resource tracker too);
- latency: `ingest postgres` runs live at default settings while the simulator streams
  BENCH_LATENCY_RATE events/s (10k) for BENCH_LATENCY_SECONDS (60); a probe sends a marker
  event every 20 ms and reads the sink's ``ingest_offsets`` every 5 ms (written in the same
  transaction as the rows), so each marker's latency is the time from its send to the
  commit that made its raw row visible (p50, p95, p99).

Figures are ratios within this run: the machine is shared and noisy.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from bench.ingest_postgres import consume_only, run_sampled
from bench.lake import ingest_lake
from bench.runner import percentile

ROOT = Path(__file__).resolve().parents[1]


def _ingest_postgres(topic: str, schema: str, client: str) -> dict[str, Any]:
    cmd = [
        sys.executable, "-m", "antenna_elt.cli", "ingest", "postgres", "--topic", topic,
        "--schema", schema, "--group", f"bench-{uuid.uuid4().hex[:8]}", "--until-caught-up",
        "--kafka-client", client,
    ]  # fmt: skip
    return run_sampled(cmd, dict(os.environ))


def throughput(settings: Any, topic: str, count: int, client: str, work: Path) -> dict[str, Any]:
    """Ceiling, ingest postgres and ingest lake of one client on a topic of ``count``."""
    from bench.__main__ import drop_schemas, log

    log(f"{client}: consume-only ceiling")
    ceiling = consume_only(settings.kafka_bootstrap_servers, topic, count, client)
    log(f"{client}: consume-only ceiling with the library's fetch and queue defaults")
    unbounded = consume_only(
        settings.kafka_bootstrap_servers, topic, count, client, library_defaults=True
    )
    schema = f"bench_cl_{uuid.uuid4().hex[:6]}"
    try:
        log(f"{client}: ingest postgres of {count:,} events")
        pg = _ingest_postgres(topic, schema, client)
    finally:
        drop_schemas(settings, schema)
    lake = work / f"lake-{client}"
    try:
        log(f"{client}: ingest lake of {count:,} events")
        lk = ingest_lake(topic, lake, dict(os.environ), "--kafka-client", client)
    finally:
        subprocess.run(["rm", "-rf", str(lake)], check=False)
    pg_rate, lake_rate = count / pg["seconds"], count / lk["seconds"]
    return {
        "consume_only_events_per_s": round(ceiling),
        "consume_only_library_defaults_events_per_s": round(unbounded),
        "consume_only_ratio_to_library_defaults": round(ceiling / unbounded, 2),
        "ingest_postgres_events_per_s": round(pg_rate),
        "ingest_postgres_ratio_to_ceiling": round(pg_rate / ceiling, 2),
        "ingest_postgres_ratio_to_library_defaults": round(pg_rate / unbounded, 2),
        "ingest_postgres_peak_rss_mib": round(pg["peak_rss_mib"], 1),
        "ingest_lake_events_per_s": round(lake_rate),
        "ingest_lake_ratio_to_ceiling": round(lake_rate / ceiling, 2),
        "ingest_lake_ratio_to_library_defaults": round(lake_rate / unbounded, 2),
        "ingest_lake_peak_rss_mib": round(lk["peak_rss_mib"], 1),
    }


def _probe(
    settings: Any, topic: str, schema: str, group: str, stop: threading.Event
) -> list[float]:
    """Send a marker every 20 ms; return each one's seconds from send to visible commit."""
    import psycopg
    from confluent_kafka import Producer

    producer = Producer({"bootstrap.servers": settings.kafka_bootstrap_servers, "linger.ms": 0})
    sent_at: dict[int, float] = {}  # marker number -> send time
    placed: dict[tuple[int, int], int] = {}  # (partition, offset) -> marker number
    latencies: list[float] = []
    device = "00000000-0000-0000-0000-000000000001"

    def delivered(number: int) -> Any:
        def callback(error: Any, msg: Any) -> None:
            if error is None:
                placed[(msg.partition(), msg.offset())] = number
            else:
                sent_at.pop(number, None)

        return callback

    number = 0
    next_send = time.monotonic()
    query = (
        f"select partition, next_offset from {schema}.ingest_offsets "
        "where consumer_group = %s and topic = %s"
    )
    with psycopg.connect(settings.pg_conninfo, autocommit=True) as conn:
        while not stop.is_set() or placed:
            now = time.monotonic()
            if not stop.is_set() and now >= next_send:
                event = {"timestamp": int(time.time()) - 1, "id": device, "bytes": 1,
                         "app": "PROBE", "antenna_id": "a0000000-0000-0000-0000-0000000000ee"}  # fmt: skip
                sent_at[number] = time.monotonic()
                producer.produce(topic, json.dumps(event).encode(), on_delivery=delivered(number))
                number += 1
                next_send += 0.02
            producer.poll(0)
            try:
                ends = dict(conn.execute(query, (group, topic)).fetchall())
            except psycopg.Error:
                ends = {}  # the table does not exist yet
            now = time.monotonic()
            for key in [k for k in placed if k[1] < ends.get(k[0], -1)]:
                latencies.append(now - sent_at.pop(placed.pop(key)))
            if stop.is_set() and placed and now - min(sent_at.values(), default=now) > 60:
                break  # give up on markers never seen
            time.sleep(0.005)
    producer.flush(10)
    return latencies


def latency(settings: Any, client: str, rate: int, seconds: int, work: Path) -> dict[str, Any]:
    """Event -> visible raw row under a stream of ``rate`` events/s, ingest postgres live."""
    from bench.__main__ import create_topic, delete_topic, drop_schemas, log

    tag = uuid.uuid4().hex[:6]
    topic, schema, group = f"bench-lat-{tag}", f"bench_lat_{tag}", f"bench-lat-{tag}"
    create_topic(settings, topic)
    work.mkdir(parents=True, exist_ok=True)
    ingest_log = work / f"latency-{client}.log"
    try:
        log(f"{client}: latency at {rate:,} events/s for {seconds} s (ingest postgres live)")
        with ingest_log.open("wb") as out:
            ingestor = subprocess.Popen(
                [sys.executable, "-m", "antenna_elt.cli", "ingest", "postgres", "--topic", topic,
                 "--schema", schema, "--group", group, "--kafka-client", client],
                cwd=ROOT, stdout=out, stderr=subprocess.STDOUT,
            )  # fmt: skip
        time.sleep(5)  # joined the group, tables created
        simulator = subprocess.Popen(
            [sys.executable, "-m", "antenna_elt.cli", "simulate", "--topic", topic, "--rate", str(rate),
             "--count", str(rate * seconds), "--duration", f"{max(1, seconds // 60)}m", "--quiet",
             "--ledger", str(work / f"ledger-{tag}.json")],
            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        stop = threading.Event()
        latencies: list[float] = []
        prober = threading.Thread(
            target=lambda: latencies.extend(_probe(settings, topic, schema, group, stop)),
            daemon=True,
        )
        prober.start()
        simulator.wait(timeout=seconds + 600)
        stop.set()
        prober.join(timeout=120)
        ingestor.terminate()
        ingestor.wait(timeout=120)
    finally:
        delete_topic(settings, topic)
        drop_schemas(settings, schema)
    if not latencies:
        raise RuntimeError(f"no probe became visible; see {ingest_log}")
    return {
        "stream_events_per_s": rate,
        "probes_seen": len(latencies),
        "event_to_raw_row_p50_ms": round(statistics.median(latencies) * 1000),
        "event_to_raw_row_p95_ms": round(percentile(latencies, 0.95) * 1000),
        "event_to_raw_row_p99_ms": round(percentile(latencies, 0.99) * 1000),
    }


def bench_clients(settings: Any, events: int, rate: int, seconds: int) -> dict[str, Any]:
    from antenna_elt.ingest.consumer import CLIENTS
    from bench.__main__ import RESULTS, create_topic, delete_topic, log, simulate

    topic = f"bench-cl-{uuid.uuid4().hex[:6]}"
    work = RESULTS / f"clients-{topic}"
    out: dict[str, Any] = {"events": events}
    create_topic(settings, topic)
    try:
        log(f"producing {events:,} events to {topic}")
        simulate(topic, events)
        for client in CLIENTS:
            out[client] = throughput(settings, topic, events, client, work)
            log(f"{client}: {json.dumps(out[client])}")
    finally:
        delete_topic(settings, topic)
    if seconds:
        for client in CLIENTS:
            out[client].update(latency(settings, client, rate, seconds, work))
            log(f"{client}: {json.dumps(out[client])}")
    subprocess.run(["rm", "-rf", str(work)], check=False)
    return out
