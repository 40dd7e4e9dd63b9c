"""What each micro-batch of ``ingest spark --sink postgres`` writes: the same tables as
``antenna-elt ingest postgres``, through the same :class:`PostgresSink`.

Executors validate the messages with :func:`antenna_elt.contract.parse` (``mapInArrow``)
and hand typed rows back as Arrow; the driver COPYs them in one transaction that also
stores each partition's next offset in ``<schema>.ingest_offsets``. Before each batch the
driver reads those offsets and the executors drop what is below them, so the micro-batch a
killed job replays from its checkpoint adds nothing twice (``foreachBatch`` itself is only
at-least-once).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from antenna_elt.ingest.batch import Batch, RejectRow, Row
from antenna_elt.sinks.postgres import PostgresSink
from antenna_elt.spark.lake import KAFKA_COLUMNS, floor_messages

PARSED_SCHEMA = (
    "partition int, offset bigint, ts bigint, id string, antenna_id string, bytes bigint, "
    "app string, raw_value binary, reason string"
)


@dataclass(frozen=True)
class ParseOnExecutor:
    """The executors' part: validate one task's messages into typed Arrow rows."""

    topic: str
    floors: dict[int, int]

    def __call__(self, batches: Iterator[Any]) -> Iterator[Any]:
        import pyarrow as pa

        messages = floor_messages(batches, self.floors)
        if not messages:
            return
        rows, rejects = Batch(self.topic, messages).split()
        n, m = len(rows), len(rejects)
        ts, ids, antennas, nbytes, apps, partitions, offsets = (
            zip(*rows, strict=True) if rows else ((),) * 7
        )
        yield pa.RecordBatch.from_pydict(
            {
                "partition": pa.array(list(partitions) + [r[0] for r in rejects], pa.int32()),
                "offset": pa.array(list(offsets) + [r[1] for r in rejects], pa.int64()),
                "ts": pa.array(list(ts) + [None] * m, pa.int64()),
                "id": pa.array(list(ids) + [None] * m, pa.string()),
                "antenna_id": pa.array(list(antennas) + [None] * m, pa.string()),
                "bytes": pa.array(list(nbytes) + [None] * m, pa.int64()),
                "app": pa.array(list(apps) + [None] * m, pa.string()),
                "raw_value": pa.array([None] * n + [r[2] for r in rejects], pa.binary()),
                "reason": pa.array([None] * n + [r[3] for r in rejects], pa.string()),
            }
        )


def split_parsed(table: Any) -> tuple[list[Row], list[RejectRow], dict[int, int], dict[int, int]]:
    """Rows and rejects of the parsed Arrow table, and each partition's offset range."""
    columns = {name: table.column(name).to_pylist() for name in table.column_names}
    rows: list[Row] = []
    rejects: list[RejectRow] = []
    first: dict[int, int] = {}
    nxt: dict[int, int] = {}
    for partition, offset, ts, device, antenna, nbytes, app, raw, reason in zip(
        columns["partition"], columns["offset"], columns["ts"], columns["id"],
        columns["antenna_id"], columns["bytes"], columns["app"], columns["raw_value"],
        columns["reason"], strict=True,
    ):  # fmt: skip
        if reason is None:
            rows.append((ts, device, antenna, nbytes, app, partition, offset))
        else:
            rejects.append((partition, offset, raw, reason))
        if partition not in first or offset < first[partition]:
            first[partition] = offset
        if offset + 1 > nxt.get(partition, -1):
            nxt[partition] = offset + 1
    rows.sort(key=lambda r: (r[5], r[6]))
    rejects.sort(key=lambda r: (r[0], r[1]))
    return rows, rejects, first, nxt


class PostgresBatchWriter:
    """The driver's part: ``foreachBatch`` function of the PostgreSQL query."""

    description: str

    def __init__(self, conninfo: str, schema: str, group: str, topic: str):
        self.sink = PostgresSink(conninfo, schema, group)
        self.topic = topic
        self.description = self.sink.description

    def recover(self, partitions: Iterable[int]) -> dict[int, int]:
        self.sink.setup()
        return self.sink.stored_offsets(self.topic, partitions)

    def write(self, df: Any, partitions: Iterable[int]) -> tuple[int, int]:
        floors = self.sink.stored_offsets(self.topic, list(partitions))
        table = (
            df.selectExpr(*KAFKA_COLUMNS)
            .mapInArrow(ParseOnExecutor(self.topic, floors), PARSED_SCHEMA)
            .toArrow()
        )
        rows, rejects, first, nxt = split_parsed(table)
        if not first:
            return 0, 0
        return self.sink.write_rows(self.topic, rows, rejects, first, nxt)

    def watermark(self) -> int | None:
        return None
