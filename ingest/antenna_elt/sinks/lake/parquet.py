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


def lean_arrow() -> None:
    """Arrow set up for a process that writes the lake beside a consumer on a small machine:
    buffers from the C library's allocator instead of the bundled mimalloc, which keeps what
    a batch freed for the next one, and one CPU thread and one I/O thread instead of a pool
    a core (each thread keeps an allocator arena of its own): the lake writer's peak fell
    by 55 MiB at the same rate (README, Benchmarks). Process-wide; the lake sink calls it
    before its first write."""
    import pyarrow as pa

    if pa.default_memory_pool().backend_name != "system":
        pa.set_memory_pool(pa.system_memory_pool())
    pa.set_cpu_count(1)
    pa.set_io_thread_count(1)


def events_table(topic: str, rows: list[Row], ingested_us: int) -> Any:
    """The lake's events table of ``rows``, in their order."""
    import pyarrow as pa
    import pyarrow.compute as pc

    utc = pa.timestamp("us", tz="UTC")
    if not rows:
        return event_schema().empty_table()
    ts, ids, antennas, nbytes, apps, partitions, offsets = zip(*rows, strict=True)
    return pa.Table.from_arrays(
        [
            pc.multiply(pa.array(ts, pa.int64()), 1_000_000).cast(utc),
            pa.array(ids, pa.string()),
            pa.array(antennas, pa.string()),
            pa.array(nbytes, pa.int64()),
            pa.array(apps, pa.string()),
            pa.repeat(pa.scalar(topic, pa.string()), len(rows)),
            pa.array(partitions, pa.int32()),
            pa.array(offsets, pa.int64()),
            pa.repeat(pa.scalar(ingested_us, utc), len(rows)),
        ],
        schema=event_schema(),
    )


def split_by_file(table: Any) -> list[tuple[int, int, Any]]:
    """``(partition, hour start, table)`` for every (partition, event hour) of an events
    table, sorted, rows in offset order: one sort, then zero-copy slices."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if table.num_rows == 0:
        return []
    seconds = pc.divide(table["event_time"].cast(pa.int64()), 1_000_000)
    hours = pc.multiply(pc.divide(seconds, HOUR), HOUR)
    keyed = table.append_column("_hour", hours)
    keyed = keyed.take(
        pc.sort_indices(
            keyed,
            sort_keys=[("kafka_partition", "ascending"), ("_hour", "ascending"),
                       ("kafka_offset", "ascending")],
        )
    )  # fmt: skip
    groups = sorted(
        (int(g["kafka_partition"]), int(g["_hour"]), int(g["kafka_offset_count"]))
        for g in keyed.group_by(["kafka_partition", "_hour"])
        .aggregate([("kafka_offset", "count")])
        .to_pylist()
    )
    keyed = keyed.drop_columns(["_hour"])
    result = []
    begin = 0
    for partition, hour, rows in groups:
        result.append((partition, hour, keyed.slice(begin, rows)))
        begin += rows
    return result


def event_tables(topic: str, rows: list[Row], ingested_us: int) -> list[tuple[int, int, Any]]:
    """``(partition, hour start, table)`` for every (partition, event hour) of ``rows``,
    sorted, rows in offset order."""
    return split_by_file(events_table(topic, rows, ingested_us))


def partition_figures(table: Any) -> dict[int, tuple[int, int]]:
    """``partition -> (events, newest event time in epoch seconds)`` of an events table."""
    import pyarrow as pa

    if table.num_rows == 0:
        return {}
    grouped = (
        pa.table(
            {
                "p": table["kafka_partition"],
                "t": table["event_time"].cast(pa.int64()),
            }
        )
        .group_by("p")
        .aggregate([("t", "count"), ("t", "max")])
        .to_pylist()
    )
    return {int(g["p"]): (int(g["t_count"]), int(g["t_max"]) // 1_000_000) for g in grouped}


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
