"""Benchmark: `antenna-elt run` under a live stream (issue 14).

With `BENCH_RUN_HISTORY` events of history already in the marts (1M and 10M), the simulator
streams at `BENCH_RUN_RATE` events/s (10k) while `antenna-elt run --warehouse none` ingests
and rebuilds the PostgreSQL marts back to back. A probe sends one marker event a second
(its own app name) and watches the `bytes` mart for it: the time from production to
visibility is each marker's latency (p50, p95). Also: the speed cycles' durations (from the
runner's status lines), the test cycles beside them (`--tests beside`: their durations and
failed tests), the consumer lag it reports, and the peak memory of the runner's whole process
tree (runner, ingestor and its writer, dbt), sampled from /proc.

`BENCH_RUN_TESTS` (default ``beside,in-build``) names the runner's test modes to measure, each
over a history of its own, one after the other in the same run: the latency of ``beside``
(builds without tests, `dbt test` beside them) as a ratio of ``in-build``'s (each build runs
its own tests, as before).
"""

from __future__ import annotations

import json
import os
import re
import signal
import statistics
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def tree_rss_kib(pid: int) -> int:
    """Resident memory of a process and all its descendants, in KiB."""
    total = 0
    todo = [pid]
    while todo:
        current = todo.pop()
        try:
            for line in Path(f"/proc/{current}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
            for task in Path(f"/proc/{current}/task").iterdir():
                children = (task / "children").read_text().split()
                todo.extend(int(c) for c in children)
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue
    return total


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


def probe(settings: Any, topic: str, marts: str, stop: threading.Event) -> list[float]:
    """Send a marker event a second; return each one's seconds until `bytes` shows it."""
    import psycopg
    from confluent_kafka import Producer

    producer = Producer({"bootstrap.servers": settings.kafka_bootstrap_servers, "linger.ms": 0})
    sent: dict[str, float] = {}
    latencies: list[float] = []
    device = "00000000-0000-0000-0000-000000000001"
    tag = uuid.uuid4().hex[:6]
    n = 0
    with psycopg.connect(settings.pg_conninfo, autocommit=True) as conn:
        while not stop.is_set() or sent:
            if not stop.is_set():
                app = f"PROBE-{tag}-{n}"
                n += 1
                event = {"timestamp": int(time.time()) - 1, "id": device, "bytes": 1, "app": app,
                         "antenna_id": "a0000000-0000-0000-0000-0000000000ee"}  # fmt: skip
                producer.produce(topic, json.dumps(event).encode(), key=device.encode())
                producer.flush(5)
                sent[app] = time.monotonic()
            try:
                rows = conn.execute(
                    f"select id from {marts}.bytes where type = 'app_bytes_total' and id = any(%s)",
                    (list(sent),),
                ).fetchall()
            except psycopg.Error:
                rows = []  # the mart is being replaced: look again
            now = time.monotonic()
            for (app,) in rows:
                latencies.append(now - sent.pop(app))
            if stop.is_set() and sent and now - min(sent.values()) > 120:
                break  # give up on markers never seen
            time.sleep(0.25)
    return latencies


def measure(
    settings: Any, runner_pid: int, simulator: Any, topic: str, marts: str, seconds: int
) -> tuple[list[float], int]:
    """Probe latencies and peak memory (KiB) of the runner's tree until the stream ends."""
    peak = 0
    stop = threading.Event()
    latencies: list[float] = []

    def sample() -> None:
        nonlocal peak
        while not stop.is_set():
            peak = max(peak, tree_rss_kib(runner_pid))
            stop.wait(0.5)

    def watch() -> None:
        latencies.extend(probe(settings, topic, marts, stop))

    threads = [
        threading.Thread(target=sample, daemon=True),
        threading.Thread(target=watch, daemon=True),
    ]
    for thread in threads:
        thread.start()
    simulator.wait(timeout=seconds + 600)
    stop.set()
    for thread in threads:
        thread.join(timeout=180)
    return latencies, peak


def bench_runner(
    settings: Any, histories: list[int], rate: int, seconds: int, modes: list[str]
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for history in histories:
        for mode in modes:
            out[f"{history}:{mode}"] = bench_one(settings, history, rate, seconds, mode)
        if "beside" in modes and "in-build" in modes:
            beside, in_build = out[f"{history}:beside"], out[f"{history}:in-build"]
            out[f"{history}:beside/in-build"] = {
                key: round(beside[key] / in_build[key], 2)
                for key in (
                    "event_to_mart_p50_s",
                    "event_to_mart_p95_s",
                    "speed_cycle_median_s",
                    "runner_peak_rss_mib",
                )
                if beside.get(key) and in_build.get(key)
            }
    return out


def bench_one(settings: Any, history: int, rate: int, seconds: int, mode: str) -> dict[str, Any]:
    import psycopg

    from antenna_elt.dbt import run_dbt
    from antenna_elt.sinks.postgres import DDL
    from bench.__main__ import GENERATE_PG, create_topic, delete_topic, drop_schemas, log

    tag = uuid.uuid4().hex[:6]
    topic, raw, dbt_schema = f"bench-run-{tag}", f"bench_run_raw_{tag}", f"bench_run_{tag}"
    marts = f"{dbt_schema}_marts"
    create_topic(settings, topic)
    env = {
        **os.environ,
        "ANTENNA_ELT_TOPIC": topic,
        "ANTENNA_ELT_RAW_SCHEMA": raw,
        "ANTENNA_ELT_DBT_SCHEMA": dbt_schema,
        "ANTENNA_ELT_ALERTS_TOPIC": f"bench-alerts-{tag}",
        "ANTENNA_ELT_ALERT_LOG_SCHEMA": f"bench_alerts_{tag}",
    }
    work = ROOT / "bench" / "results" / f"run-{tag}"
    try:
        log(
            f"runner --tests {mode}: {history:,} events of history, then {rate:,} events/s for {seconds} s"
        )
        hours = max(2, history // 36_000)
        with psycopg.connect(settings.pg_conninfo, autocommit=True) as conn:
            conn.execute(DDL.format(schema=raw))
            # history ends two days ago: the stream's windows are all new
            start = int(time.time()) - 2 * 86400 - hours * 3600
            conn.execute(
                GENERATE_PG.format(schema=raw, start=start, hours=hours, count=history,
                                   first=0, last=history - 1)
            )  # fmt: skip
            conn.execute(f"analyze {raw}.device_usage")
        # the history as a running deployment has it: built, then built again with nothing
        # new (so each mart's last increment is empty, as after any quiet cycle, and the
        # runner's first touched-scope tests read the stream, not the whole history)
        for _ in range(2):
            run_dbt(["build", "--target", "postgres", "--vars", f"{{raw_schema: {raw}}}",
                     "--exclude", "resource_type:test", "resource_type:unit_test"], env=env)  # fmt: skip
        simulator = subprocess.Popen(
            [sys.executable, "-m", "antenna_elt.cli", "simulate", "--topic", topic, "--rate", str(rate),
             "--count", str(rate * seconds), "--duration", f"{max(1, seconds // 60)}m", "--quiet",
             "--ledger", str(work / "ledger.json")],
            cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        work.mkdir(parents=True, exist_ok=True)
        with (work / "runner.log").open("wb") as runner_log:
            runner = subprocess.Popen(
                [sys.executable, "-m", "antenna_elt.cli", "run", "--warehouse", "none",
                 "--tests", mode, "--postgres-group", f"bench-run-{tag}", "--work-dir", str(work)],
                cwd=ROOT, env=env, stdout=runner_log, stderr=subprocess.STDOUT,
            )  # fmt: skip
        latencies, peak = measure(settings, runner.pid, simulator, topic, marts, seconds)
        runner.send_signal(signal.SIGTERM)
        runner.wait(timeout=120)
        text = (work / "runner.log").read_text(errors="replace")
        cycles = [
            float(s) for s in re.findall(r"speed cycle \d+: dbt build postgres ([\d.]+) s", text)
        ]
        tests = [
            (float(s), int(failed))
            for s, failed in re.findall(
                r"test cycle \d+: dbt test postgres ([\d.]+) s \(\d+ tests, (\d+) failed", text
            )
        ]
        failed_in_builds = sum(
            int(n)
            for n in re.findall(r"speed cycle \d+: dbt build postgres [^\n]* (\d+) failed", text)
        )
        lags = [
            sum(int(x) for x in re.findall(r"p\d+=(\d+)", line))
            for line in re.findall(r"lag postgres ([^,\n]*)", text)
        ]
        entry = {
            "history_events": history,
            "stream_events_per_s": rate,
            "probes_seen": len(latencies),
            "event_to_mart_p50_s": round(statistics.median(latencies), 1) if latencies else None,
            "event_to_mart_p95_s": round(percentile(latencies, 0.95), 1) if latencies else None,
            "speed_cycles": len(cycles),
            "speed_cycle_median_s": round(statistics.median(cycles), 1) if cycles else None,
            "speed_cycle_max_s": round(max(cycles), 1) if cycles else None,
            "tests": mode,
            "test_cycles": len(tests),
            "test_cycle_median_s": round(statistics.median(t for t, _ in tests), 1)
            if tests
            else None,
            "test_cycle_max_s": round(max(t for t, _ in tests), 1) if tests else None,
            "tests_failed": sum(f for _, f in tests) + failed_in_builds,
            "ingest_lag_max_messages": max(lags) if lags else None,
            "runner_peak_rss_mib": round(peak / 1024, 1),
        }
        log(f"runner --tests {mode} {history:,}: {json.dumps(entry)}")
        return entry
    finally:
        delete_topic(settings, topic)
        drop_schemas(settings, raw)
        drop_schemas(settings, dbt_schema)
        drop_schemas(settings, f"bench_alerts_{tag}")
