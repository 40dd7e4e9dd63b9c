"""What the loop hands a sink: a batch of raw messages, and the rows it validates into."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from antenna_elt.contract import future_bound, parse
from antenna_elt.settings import DEFAULT_FUTURE_SKEW

# (timestamp, id, antenna_id, bytes, app, partition, offset)
Row = tuple[int, str, str, int, str, int, int]
# (partition, offset, raw value, reason)
RejectRow = tuple[int, int, bytes | None, str]


@dataclass
class Batch:
    """Raw messages of one topic, in offset order per partition, with the offset range
    of every partition. The sink validates them (:meth:`split`) where it writes them, so
    that validation runs in the writer, beside the consumer rather than after it."""

    topic: str
    messages: list[tuple[int, int, bytes | None, int | None]] = field(default_factory=list)
    """(partition, offset, value, record timestamp in ms: kafka-python's
    ``ConsumerRecord.timestamp``, -1 or None when the record has none)"""
    first_offsets: dict[int, int] = field(default_factory=dict)
    next_offsets: dict[int, int] = field(default_factory=dict)
    started: float = 0.0
    """Clock reading when the first message was added (0: empty)."""
    value_bytes: int = 0
    """Sum of the message values' sizes (for size-based flushing)."""
    clock_time: float = field(default_factory=time.time)
    """The ingestor's wall clock (epoch seconds) when the batch was read: it caps the
    record timestamps in the future bound (set by the loop when it hands the batch over)."""
    future_skew: int = DEFAULT_FUTURE_SKEW
    """Seconds an event time may be ahead of its record's time (contract.future_bound)."""

    def __len__(self) -> int:
        return len(self.messages)

    @property
    def partitions(self) -> set[int]:
        return set(self.first_offsets)

    def drop_partition(self, partition: int) -> None:
        """Forget buffered messages of a partition (they will be read again)."""
        if partition not in self.first_offsets:
            return
        self.messages = [m for m in self.messages if m[0] != partition]
        del self.first_offsets[partition]
        del self.next_offsets[partition]

    def split(self, start: int = 0, stop: int | None = None) -> tuple[list[Row], list[RejectRow]]:
        """Validate the messages (those of ``messages[start:stop]``, every one by default):
        events as rows, contract breakers as rejects."""
        rows: list[Row] = []
        rejects: list[RejectRow] = []
        rows_append = rows.append
        rejects_append = rejects.append
        skew = self.future_skew
        clock_ms = int(self.clock_time) * 1000
        clock_bound = future_bound(None, self.clock_time, skew)
        for partition, offset, value, record_ms in self.messages[start:stop]:
            # contract.future_bound, inlined: this loop runs for every message
            if record_ms is not None and 0 <= record_ms < clock_ms:
                result = parse(value, record_ms // 1000 + skew)
            else:
                result = parse(value, clock_bound)
            if type(result) is tuple:
                rows_append((*result, partition, offset))
            else:
                rejects_append((partition, offset, value, result))  # type: ignore[arg-type]
        return rows, rejects
