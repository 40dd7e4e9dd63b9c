"""Where each assigned partition stands: the next offset the loop expects (records below
it are already in the sink), set by seeking to the sink's stored offsets."""

from __future__ import annotations

from typing import Any

from antenna_elt.ingest.batch import Batch


class Positions:
    def __init__(self) -> None:
        self.expected: dict[int, int] = {}

    def next_offset(self, partition: int, default: int = 0) -> int:
        return self.expected.get(partition, default)

    def forget(self, partition: int) -> None:
        self.expected.pop(partition, None)

    def seek(self, consumer: Any, tp: Any, offset: int | None) -> None:
        """Read ``tp`` from ``offset`` (None: the partition was never written)."""
        if offset is None:
            consumer.seek_to_beginning(tp)
            self.expected[tp.partition] = 0
        else:
            consumer.seek(tp, offset)
            self.expected[tp.partition] = offset

    def add(self, batch: Batch, records: dict[Any, list[Any]]) -> int:
        """Append polled records to ``batch``, skipping those already in the sink and
        those of partitions not seeked yet; returns how many were added."""
        added = size = 0
        append = batch.messages.append
        first_offsets = batch.first_offsets
        for tp, messages in records.items():
            partition = tp.partition
            expected = self.expected.get(partition)
            if expected is None:
                # assigned but not yet seeked (the callback landed after this fetch)
                continue
            for msg in messages:
                offset = msg.offset
                if offset < expected:
                    continue  # already in the sink
                value = msg.value
                append((partition, offset, value))
                if value is not None:
                    size += len(value)
                if partition not in first_offsets:
                    first_offsets[partition] = offset
                expected = offset + 1
                added += 1
            self.expected[partition] = expected
            if partition in first_offsets:
                batch.next_offsets[partition] = expected
        batch.value_bytes += size
        return added

    def reached(self, owned: set[int], targets: dict[int, int]) -> bool:
        """Every owned partition has been read up to its target offset."""
        if not owned:
            return False
        return all(self.expected.get(p, -1) >= targets.get(p, 0) for p in owned)
