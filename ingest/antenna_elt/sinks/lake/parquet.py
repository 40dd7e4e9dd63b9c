"""Parquet encoding of the lake's files: explicit schemas (:mod:`antenna_elt.schema`),
one events table per (partition, event hour), one rejects table per partition."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from antenna_elt.ingest.batch import RejectRow, Row
from antenna_elt.schema import EVENTS, REJECTS, arrow_schema
from antenna_elt.sinks.lake.layout import HOUR

ROW_GROUP_ROWS = 128 * 1024
"""Default rows per Parquet row group of the lake's files (the sink's and compaction's)."""


def event_schema() -> Any:
    return arrow_schema(EVENTS)


def reject_schema() -> Any:
    return arrow_schema(REJECTS)


def encode(table: Any, *, compression: str, row_group_rows: int) -> bytes:
    import pyarrow as pa
    import pyarrow.parquet as pq

    out = pa.BufferOutputStream()
    pq.write_table(
        table,
        out,
        compression=compression,
        row_group_size=row_group_rows,
        write_statistics=True,
    )
    return bytes(out.getvalue().to_pybytes())


def row_count(handle: Any) -> int:
    """Rows of a Parquet file, from its footer."""
    import pyarrow.parquet as pq

    return int(pq.read_metadata(handle).num_rows)


def event_tables(topic: str, rows: list[Row], ingested_us: int) -> list[tuple[int, int, Any]]:
    """``(partition, hour start, table)`` for every (partition, event hour) of ``rows``,
    sorted, rows in offset order."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if not rows:
        return []
    ts, ids, antennas, nbytes, apps, partitions, offsets = zip(*rows, strict=True)
    utc = pa.timestamp("us", tz="UTC")
    ts_arr = pa.array(ts, pa.int64())
    part_arr = pa.array(partitions, pa.int32())
    hour_arr = pc.multiply(pc.divide(ts_arr, HOUR), HOUR)
    table = pa.Table.from_arrays(
        [
            pc.multiply(ts_arr, 1_000_000).cast(utc),
            pa.array(ids, pa.string()),
            pa.array(antennas, pa.string()),
            pa.array(nbytes, pa.int64()),
            pa.array(apps, pa.string()),
            pa.repeat(pa.scalar(topic, pa.string()), len(rows)),
            part_arr,
            pa.array(offsets, pa.int64()),
            pa.repeat(pa.scalar(ingested_us, utc), len(rows)),
        ],
        schema=event_schema(),
    )
    groups = pa.table({"p": part_arr, "h": hour_arr}).group_by(["p", "h"]).aggregate([]).to_pylist()
    result = []
    for group in sorted(groups, key=lambda g: (g["p"], g["h"])):
        partition, hour = int(group["p"]), int(group["h"])
        if len(groups) == 1:
            part = table
        else:
            mask = pc.and_(pc.equal(part_arr, partition), pc.equal(hour_arr, hour))
            part = table.filter(mask)
        result.append((partition, hour, part))
    return result


def reject_tables(topic: str, rejects: list[RejectRow], ingested_us: int) -> list[tuple[int, Any]]:
    """``(partition, table)`` of the rejects of every partition, sorted."""
    import pyarrow as pa

    by_partition: dict[int, list[RejectRow]] = defaultdict(list)
    for reject in rejects:
        by_partition[reject[0]].append(reject)
    result = []
    for partition, items in sorted(by_partition.items()):
        n = len(items)
        table = pa.Table.from_arrays(
            [
                pa.array([topic] * n, pa.string()),
                pa.array([partition] * n, pa.int32()),
                pa.array([r[1] for r in items], pa.int64()),
                pa.array([r[2] for r in items], pa.binary()),
                pa.array([r[3] for r in items], pa.string()),
                pa.array([ingested_us] * n, pa.int64()).cast(pa.timestamp("us", tz="UTC")),
            ],
            schema=reject_schema(),
        )
        result.append((partition, table))
    return result


def first_last_offsets(table: Any) -> tuple[int, int]:
    offsets = table.column("kafka_offset")
    return int(offsets[0].as_py()), int(offsets[-1].as_py())
