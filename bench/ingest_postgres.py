"""Benchmark: PostgreSQL ingest throughput against the kafka-python consume-only ceiling.

Both are measured in the same run, on the same topic, with the same consumer settings, so
the ratio is meaningful on a noisy machine. Peak memory of the ingestor (its process and
its writer process) is sampled from /proc while it runs.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


# the settings that bound the consumer's memory (fetch sizes, librdkafka's pre-fetch queue):
# left out, each library's own defaults apply
MEMORY_BOUNDS = {
    "fetch_max_bytes", "max_partition_fetch_bytes",  # kafka-python
    "fetch.max.bytes", "max.partition.fetch.bytes",  # librdkafka
    "queued.max.messages.kbytes", "queued.min.messages",
}  # fmt: skip


def consume_only(
    bootstrap: str,
    topic: str,
    total: int,
    kafka_client: str = "kafka-python",
    *,
    library_defaults: bool = False,
) -> float:
    """Messages per second of a subscribed consumer that does nothing, through the same
    client adapter, settings and poll size as the ingestors (``kafka_client``: one of
    ``antenna_elt.ingest.consumer.CLIENTS``). With ``library_defaults`` the settings that
    bound the consumer's memory are left to the library's defaults: a ceiling that those
    settings cannot lower, so that a setting which throttles consuming shows (the ratio
    to the first ceiling cannot show it: the same setting lowers both)."""
    from antenna_elt.ingest.clients import client
    from antenna_elt.ingest.consumer import RebalanceListener
    from antenna_elt.ingest.loop import MAX_POLL_RECORDS

    chosen = client(kafka_client)
    factory = chosen.default_factory
    if library_defaults:

        def factory(*args: Any, **config: Any) -> Any:
            if args:  # librdkafka: one config dict
                return chosen.default_factory(
                    {k: v for k, v in args[0].items() if k not in MEMORY_BOUNDS}
                )
            return chosen.default_factory(
                **{k: v for k, v in config.items() if k not in MEMORY_BOUNDS}
            )

    consumer = chosen.open(factory, bootstrap, f"bench-ceiling-{uuid.uuid4().hex[:8]}")
    consumer.subscribe(topic, RebalanceListener())
    seen = 0
    started = time.monotonic()
    while seen < total:
        for polled in consumer.poll(timeout_ms=500, max_records=MAX_POLL_RECORDS).values():
            seen += len(polled.messages)
    elapsed = time.monotonic() - started
    consumer.close()
    return seen / elapsed


def _tree_rss_kib(pid: int) -> int:
    """Resident memory of a process and its children (the writer process), in KiB."""
    total = 0
    pids = [pid]
    children = Path(f"/proc/{pid}/task/{pid}/children")
    if children.exists():
        pids += [int(p) for p in children.read_text().split()]
    for p in pids:
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except FileNotFoundError:
            pass
    return total


def run_sampled(cmd: list[str], env: dict[str, str]) -> dict[str, Any]:
    """Run an ingestor process to its end: wall-clock seconds and peak memory (process and
    writer, sampled every 0.2 s from /proc). Raises with its log tail if it fails."""
    peak = 0
    started = time.monotonic()
    proc = subprocess.Popen(cmd, env=env, cwd=ROOT, stderr=subprocess.PIPE, text=True)
    stop = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not stop.is_set():
            peak = max(peak, _tree_rss_kib(proc.pid))
            stop.wait(0.2)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    _, err = proc.communicate()
    elapsed = time.monotonic() - started
    stop.set()
    sampler.join()
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd[3:5])} failed ({proc.returncode}): {err[-2000:]}")
    lines = err.strip().splitlines()
    return {"seconds": elapsed, "peak_rss_mib": peak / 1024, "log_tail": lines[-1] if lines else ""}


def ingest_postgres(topic: str, schema: str, env: dict[str, str]) -> dict[str, Any]:
    """Run `antenna-elt ingest postgres --until-caught-up` and time it end to end."""
    cmd = [
        sys.executable, "-m", "antenna_elt.cli", "ingest", "postgres", "--topic", topic,
        "--schema", schema, "--group", f"bench-{uuid.uuid4().hex[:8]}", "--until-caught-up",
    ]  # fmt: skip
    return run_sampled(cmd, env)


def env_for_cli() -> dict[str, str]:
    return dict(os.environ)
