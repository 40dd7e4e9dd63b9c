"""Benchmark: what BRIN autosummarize saves an incremental dbt run on a large raw table.

Two copies of raw.device_usage (the ingestor's own DDL), 2M events and a VACUUM, then
300k more events (far below autovacuum's insert threshold of 20% of the table, as a few
hours of traffic on a big table would be). After one autovacuum naptime the newest 10k
events are read the way an incremental model reads them. Without autosummarize the new
block ranges are in no BRIN summary and every one of them is read.

`python -m bench.brin` (about 2 minutes) prints the heap blocks read by each.
"""

from __future__ import annotations

import json
import re
import time

INSERT = """
insert into {schema}.device_usage (event_time, id, antenna_id, bytes, app, kafka_topic, kafka_partition, kafka_offset)
select to_timestamp(1767225600 + g), gen_random_uuid(), gen_random_uuid(), 1, 'SKYPE', 'bench', 0, g
from generate_series({first}, {last}) g
"""


def main() -> int:
    import psycopg

    from antenna_elt.devstack import stack
    from antenna_elt.settings import load_settings
    from antenna_elt.sinks.postgres import DDL

    settings = load_settings()
    stack.ensure_up(settings)
    results: dict[str, dict[str, float]] = {}
    with psycopg.connect(settings.pg_conninfo, autocommit=True) as conn:
        schemas = {"bench_brin_autosummarize": "on", "bench_brin_plain": "off"}
        try:
            for schema, setting in schemas.items():
                conn.execute(f"drop schema if exists {schema} cascade")
                conn.execute(DDL.format(schema=schema))
                conn.execute(
                    f"alter index {schema}.device_usage_event_time_brin set (autosummarize = {setting})"
                )
                conn.execute(INSERT.format(schema=schema, first=0, last=1_999_999))
                conn.execute(f"vacuum analyze {schema}.device_usage")
                conn.execute(INSERT.format(schema=schema, first=2_000_000, last=2_299_999))
            time.sleep(80)  # autovacuum_naptime (60 s) and its work
            for schema in schemas:
                plan = "\n".join(
                    row[0]
                    for row in conn.execute(
                        "explain (analyze, buffers) select sum(bytes) from "
                        f"{schema}.device_usage where event_time >= to_timestamp(1767225600 + 2290000)"
                    ).fetchall()
                )
                blocks = re.search(r"Heap Blocks: lossy=(\d+)", plan)
                elapsed = re.search(r"Execution Time: ([\d.]+) ms", plan)
                results[schema] = {
                    "heap_blocks_read": int(blocks.group(1)) if blocks else -1,
                    "ms": float(elapsed.group(1)) if elapsed else -1.0,
                }
        finally:
            for schema in schemas:
                conn.execute(f"drop schema if exists {schema} cascade")
    on, off = results["bench_brin_autosummarize"], results["bench_brin_plain"]
    results["blocks_ratio_plain_to_autosummarize"] = {
        "ratio": round(off["heap_blocks_read"] / max(1, on["heap_blocks_read"]), 1)
    }
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
