"""Benchmark: `antenna-elt ingest spark` (local[2]) against the Python ingestors, on the
same topic, as ratios of the same kafka-python consume-only ceiling.

Each ingestor runs as a process with a bounded run (`--until-caught-up` /
`--available-now`), timed end to end; then it runs again with the same group (and Spark
checkpoint) on the topic it has just caught up with, which does nothing: that second run's
time is the ingestor's start-up and shut-down, and `steady` rates leave it out.
"""

from __future__ import annotations

import sys
import uuid
from pathlib import Path
from typing import Any

from bench.ingest_postgres import run_sampled

ROOT = Path(__file__).resolve().parents[1]


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "antenna_elt.cli", "ingest", *args]


def ingest_commands(topic: str, work: Path, schema: str) -> dict[str, list[str]]:
    """The four ingestors of the comparison, each with a group of its own."""
    tag = uuid.uuid4().hex[:8]
    checkpoints = work / f"checkpoints-{tag}"
    return {
        "lake": _cli("lake", "--topic", topic, "--lake", str(work / f"lake-py-{tag}"),
                     "--group", f"bench-lake-{tag}", "--until-caught-up"),
        "spark_lake": _cli("spark", "--topic", topic, "--lake", str(work / f"lake-spark-{tag}"),
                           "--group", f"bench-spark-lake-{tag}", "--available-now",
                           "--checkpoint", str(checkpoints / "lake"), "--log-interval", "30"),
        "postgres": _cli("postgres", "--topic", topic, "--schema", f"{schema}_py",
                         "--group", f"bench-pg-{tag}", "--until-caught-up"),
        "spark_postgres": _cli("spark", "--sink", "postgres", "--topic", topic,
                               "--schema", f"{schema}_spark", "--group", f"bench-spark-pg-{tag}",
                               "--available-now", "--checkpoint", str(checkpoints / "postgres"),
                               "--log-interval", "30"),
    }  # fmt: skip


def bench_ingestors(
    topic: str, count: int, ceiling: float, work: Path, schema: str, env: dict[str, str]
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, cmd in ingest_commands(topic, work, schema).items():
        run = run_sampled(cmd, env)
        idle = run_sampled(cmd, env)  # caught up already: start-up and shut-down only
        rate = count / run["seconds"]
        steady = count / max(run["seconds"] - idle["seconds"], 1e-9)
        out[name] = {
            "events": count,
            "seconds": round(run["seconds"], 1),
            "startup_s": round(idle["seconds"], 1),
            "events_per_s": round(rate),
            "ratio_to_ceiling": round(rate / ceiling, 2),
            "steady_events_per_s": round(steady),
            "steady_ratio_to_ceiling": round(steady / ceiling, 2),
            "peak_rss_mib": round(run["peak_rss_mib"], 1),
        }
    return out
