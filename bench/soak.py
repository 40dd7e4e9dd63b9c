"""Benchmark (BENCH_PARTS=soak, not in the default parts): both ingestors for a long time.

The simulator streams BENCH_SOAK_RATE events/s (5k) for BENCH_SOAK_SECONDS (3600) into a
topic that `antenna-elt ingest postgres` and `antenna-elt ingest lake` (default settings,
compaction on) consume as the long-running processes an operator leaves them as. Every
BENCH_SOAK_SAMPLE seconds (10): each ingestor's consumer lag (end offsets minus the offsets
it mirrors to its group after each write) and resident memory (its process and writer
process). A line a minute shows progress. What it answers: is the lag bounded (its maximum,
and its maximum over the last quarter against the first), and is memory flat (each
ingestor's peak over the last quarter against its peak over the second quarter, once
warmed up, and the least-squares slope over the second half in MiB per hour)?
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

from bench.runner import tree_rss_kib

ROOT = Path(__file__).resolve().parents[1]


def group_lag(admin: Any, consumer: Any, topic: str, group: str) -> int | None:
    """Messages of `topic` not yet stored by `group` (None before its first commit)."""
    from kafka import TopicPartition

    partitions = sorted(consumer.partitions_for_topic(topic) or [])
    tps = [TopicPartition(topic, p) for p in partitions]
    ends = consumer.end_offsets(tps) if tps else {}
    committed = admin.list_group_offsets(group).get(group, {})
    if not committed:
        return None
    return sum(max(0, ends[tp] - (committed[tp].offset if tp in committed else 0)) for tp in tps)


def slope_per_hour(points: list[tuple[float, float]]) -> float:
    """Least-squares slope of (seconds, value) points, per hour."""
    n = len(points)
    if n < 2:
        return 0.0
    mx = sum(t for t, _ in points) / n
    my = sum(v for _, v in points) / n
    var = sum((t - mx) ** 2 for t, _ in points)
    if var == 0:
        return 0.0
    return sum((t - mx) * (v - my) for t, v in points) / var * 3600


def summarize(samples: list[dict[str, Any]], name: str) -> dict[str, Any]:
    """Lag and memory figures of one ingestor over the run's samples."""
    n = len(samples)
    lags = [s[f"{name}_lag"] for s in samples if s[f"{name}_lag"] is not None]
    rss = [(s["t"], s[f"{name}_rss_mib"]) for s in samples if s[f"{name}_rss_mib"]]
    q = max(1, n // 4)

    def peak(part: list[dict[str, Any]], key: str) -> float:
        values = [s[key] for s in part if s[key] is not None]
        return max(values) if values else 0.0

    second_quarter, last_quarter = samples[q : 2 * q], samples[-q:]
    return {
        "lag_max_messages": max(lags) if lags else None,
        "lag_max_first_quarter": peak(samples[:q], f"{name}_lag"),
        "lag_max_last_quarter": peak(last_quarter, f"{name}_lag"),
        "lag_at_end": lags[-1] if lags else None,
        "rss_peak_mib": round(max(v for _, v in rss), 1) if rss else None,
        "rss_peak_second_quarter_mib": round(peak(second_quarter, f"{name}_rss_mib"), 1),
        "rss_peak_last_quarter_mib": round(peak(last_quarter, f"{name}_rss_mib"), 1),
        "rss_slope_second_half_mib_per_hour": round(slope_per_hour(rss[len(rss) // 2 :]), 1),
    }


def bench_soak(settings: Any, rate: int, seconds: int, sample: float) -> dict[str, Any]:
    from kafka import KafkaAdminClient, KafkaConsumer

    from bench.__main__ import RESULTS, create_topic, delete_topic, drop_schemas, log

    tag = uuid.uuid4().hex[:6]
    topic, schema = f"bench-soak-{tag}", f"bench_soak_{tag}"
    groups = {"postgres": f"bench-soak-pg-{tag}", "lake": f"bench-soak-lake-{tag}"}
    work = RESULTS / f"soak-{tag}"
    work.mkdir(parents=True, exist_ok=True)
    create_topic(settings, topic)
    cli = [sys.executable, "-m", "antenna_elt.cli"]
    env = dict(os.environ)
    procs: dict[str, subprocess.Popen[bytes]] = {}
    samples: list[dict[str, Any]] = []
    try:
        log(f"soak: {rate:,} events/s for {seconds} s into ingest postgres and ingest lake")
        commands = {
            "postgres": [*cli, "ingest", "postgres", "--topic", topic, "--schema", schema,
                         "--group", groups["postgres"]],
            "lake": [*cli, "ingest", "lake", "--topic", topic, "--group", groups["lake"],
                     "--lake", (work / "lake").as_uri()],
        }  # fmt: skip
        for name, argv in commands.items():
            with (work / f"ingest-{name}.log").open("wb") as out:
                procs[name] = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=out,
                                               stderr=subprocess.STDOUT)  # fmt: skip
        simulator = subprocess.Popen(
            [*cli, "simulate", "--topic", topic, "--rate", str(rate), "--count", str(rate * seconds),
             "--duration", f"{max(1, seconds // 60)}m", "--quiet"],
            cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        admin = KafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap_servers)
        consumer = KafkaConsumer(bootstrap_servers=settings.kafka_bootstrap_servers)
        started = time.monotonic()
        last_line = started
        while simulator.poll() is None or time.monotonic() - started < seconds:
            now = time.monotonic()
            entry: dict[str, Any] = {"t": round(now - started, 1)}
            for name, proc in procs.items():
                if proc.poll() is not None:
                    raise RuntimeError(f"ingest {name} exited with code {proc.returncode}: "
                                       f"see {work / f'ingest-{name}.log'}")  # fmt: skip
                entry[f"{name}_rss_mib"] = round(tree_rss_kib(proc.pid) / 1024, 1)
                try:
                    entry[f"{name}_lag"] = group_lag(admin, consumer, topic, groups[name])
                except Exception:  # the broker busy for a moment: no figure this time
                    entry[f"{name}_lag"] = None
            samples.append(entry)
            if now - last_line >= 60:
                last_line = now
                log(
                    f"soak {entry['t']:.0f}/{seconds} s: lag postgres {entry['postgres_lag']}, "
                    f"lake {entry['lake_lag']}; RSS postgres {entry['postgres_rss_mib']} MiB, "
                    f"lake {entry['lake_rss_mib']} MiB"
                )
            time.sleep(max(0.0, sample - (time.monotonic() - now)))
        admin.close()
        consumer.close()
        out = {
            "rate_events_per_s": rate,
            "seconds": seconds,
            "samples": len(samples),
            "postgres": summarize(samples, "postgres"),
            "lake": summarize(samples, "lake"),
        }
        (work / "samples.json").write_text(json.dumps(samples))
        log(f"soak: {json.dumps(out)} (samples in {work / 'samples.json'})")
        return out
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=60)
                except subprocess.TimeoutExpired:
                    proc.kill()
        delete_topic(settings, topic)
        drop_schemas(settings, schema)
        subprocess.run(["rm", "-rf", str(work / "lake")], check=False)
