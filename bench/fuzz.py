"""Benchmark part `fuzz`: the differential fuzz test at scale.

Runs ingest/tests/integration/test_differential_fuzz.py with 100,000 hostile messages
(BENCH_FUZZ_MESSAGES) through both ingestors, as `make test` does with 3,000: neither may
crash, each holds every offset once, and the two agree row for row and reason for reason.
Reports whether it held and how long it took; `python -m bench.fuzz` runs it alone.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
TEST = "ingest/tests/integration/test_differential_fuzz.py::test_hostile_traffic_lands_identically_in_both_sinks_and_nothing_crashes"


def bench_fuzz(messages: int, seed: int = 13) -> dict[str, Any]:
    env = {
        **os.environ,
        "ANTENNA_ELT_FUZZ_MESSAGES": str(messages),
        "ANTENNA_ELT_FUZZ_SEED": str(seed),
    }
    started = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", TEST],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
    )
    seconds = time.monotonic() - started
    result: dict[str, Any] = {
        "messages": messages,
        "seed": seed,
        "held": proc.returncode == 0,
        "seconds": round(seconds, 1),
        "messages_per_s_both_sinks": round(messages / seconds),
    }
    if proc.returncode != 0:
        result["output_tail"] = proc.stdout[-4000:]
    return result


if __name__ == "__main__":
    outcome = bench_fuzz(int(os.environ.get("BENCH_FUZZ_MESSAGES", "100000")))
    print(json.dumps(outcome, indent=2))
    sys.exit(0 if outcome["held"] else 1)
