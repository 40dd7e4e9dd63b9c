"""The parts of `ingest spark` that need no Spark: the floor that makes a replayed
micro-batch skip what the sink holds, offset ranges, merging what executors staged, the
Kafka source's starting offsets, the PostgreSQL path's typed rows; and the lake's columns
as the dbt spark target declares them, against the one schema."""

from __future__ import annotations

import json
import re

import pyarrow as pa

from antenna_elt.schema import EVENTS, REJECTS, arrow_schema
from antenna_elt.settings import PROJECT_ROOT
from antenna_elt.sinks.lake.sink import PendingFile, StagedPartition
from antenna_elt.spark.lake import floor_messages, merge_staged, offset_ranges
from antenna_elt.spark.postgres import ParseOnExecutor, split_parsed
from antenna_elt.spark.stream import starting_offsets

VALID = json.dumps(
    {
        "timestamp": 1_795_489_200,
        "id": "00000000-0000-0000-0000-000000000001",
        "antenna_id": "A0000000-0000-0000-0000-00000000000A",
        "bytes": 10,
        "app": "SKYPE",
    }
).encode()


def batch(rows: list[tuple[int, int, bytes | None, int | None]]) -> pa.RecordBatch:
    partitions, offsets, values, stamps = zip(*rows, strict=True)
    return pa.RecordBatch.from_pydict(
        {
            "partition": pa.array(partitions, pa.int32()),
            "offset": pa.array(offsets, pa.int64()),
            "value": pa.array(values, pa.binary()),
            "timestamp_ms": pa.array(stamps, pa.int64()),
        }
    )


def test_messages_below_what_the_sink_holds_are_dropped() -> None:
    rows = [(0, 5, b"a", 1), (0, 6, b"b", 2), (1, 0, b"c", -1), (2, 9, None, 4)]
    assert floor_messages([batch(rows)], {0: 6, 2: 10}) == [(0, 6, b"b", 2), (1, 0, b"c", -1)]


def test_offset_ranges_are_first_and_next_of_each_partition() -> None:
    messages = [(0, 7, b"", -1), (0, 5, b"", -1), (1, 2, b"", -1)]
    assert offset_ranges(messages) == ({0: 5, 1: 2}, {0: 8, 1: 3})


def staged(partition: int, first: int, nxt: int, tmp: str) -> tuple[int, str]:
    part = StagedPartition(
        partition, 1, first, nxt, nxt - first, 0, first * 10,
        [PendingFile(tmp, tmp.replace("tmp", "final"), "device_usage", 0, nxt - first)],
    )  # fmt: skip
    return partition, json.dumps(part.to_json())


def test_pieces_of_one_partition_staged_by_several_tasks_merge_into_one_range() -> None:
    merged = merge_staged(
        [staged(0, 10, 20, "tmp/a"), staged(1, 0, 5, "tmp/c"), staged(0, 0, 10, "tmp/b")]
    )
    assert sorted(merged) == [0, 1]
    zero = merged[0]
    assert (zero.first_offset, zero.next_offset, zero.events, zero.max_event_time) == (
        0,
        20,
        20,
        100,
    )
    assert [f.tmp for f in zero.files] == ["tmp/a", "tmp/b"]


def test_a_new_checkpoint_starts_at_the_sinks_offsets_or_the_earliest() -> None:
    assert json.loads(starting_offsets("devices", [0, 1, 2], {1: 42})) == {
        "devices": {"0": -2, "1": 42, "2": -2}
    }


def test_executors_type_events_and_rejects_for_the_postgres_sink() -> None:
    parse = ParseOnExecutor("devices", {0: 1})
    out = list(
        parse(
            iter([batch([(0, 0, VALID, -1), (0, 1, VALID, -1), (0, 2, b"{", -1), (1, 0, b"", -1)])])
        )
    )
    rows, rejects, first, nxt = split_parsed(pa.Table.from_batches(out))
    assert rows == [
        (1_795_489_200, "00000000-0000-0000-0000-000000000001",
         "a0000000-0000-0000-0000-00000000000a", 10, "SKYPE", 0, 1),
    ]  # fmt: skip
    assert rejects == [(0, 2, b"{", "not_json"), (1, 0, b"", "empty_message")]
    assert (first, nxt) == ({0: 1, 1: 0}, {0: 3, 1: 1})


def test_the_dbt_spark_targets_lake_tables_have_the_lakes_columns() -> None:
    macros = (PROJECT_ROOT / "macros" / "ingest_increments.sql").read_text()
    body = macros[macros.index("{% macro spark_lake_columns") :]
    body = body[: body.index("{%- endmacro %}")]
    spark_types = {"timestamp[us, tz=UTC]": "timestamp", "string": "string", "int32": "int",
                   "int64": "bigint", "binary": "binary"}  # fmt: skip
    types = re.findall(r"(\w+) (timestamp|string|int|bigint|binary)\b", body)
    assert [(name, kind) for name, kind in types] == [
        (field.name, spark_types[str(field.type)])
        for table in (EVENTS, REJECTS)
        for field in arrow_schema(table)
    ]
