"""Where each assigned partition stands: the next offset the loop expects (records below
it are already in the sink), set by seeking to the sink's stored offsets."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from antenna_elt.ingest.batch import Batch
from antenna_elt.ingest.consumer import Polled


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

    def add(
        self,
        batch: Batch,
        records: dict[Any, Polled],
        seeked: set[int] | frozenset[int] = frozenset(),
    ) -> int:
        """Append polled records to ``batch``, skipping those already in the sink, those
        of partitions not seeked yet and those of partitions ``seeked`` after this poll
        fetched them; returns how many were added."""
        added = 0
        first_offsets = batch.first_offsets
        for tp, (messages, size) in records.items():
            if not messages:
                continue
            partition = tp.partition
            expected = self.expected.get(partition)
            if expected is None:
                # assigned but not yet seeked (the callback landed after this fetch)
                continue
            if partition in seeked:
                # the poll that ran the assignment callback fetched these from Kafka's
                # committed offset, which may be ahead of the sink's: the seek that just
                # happened reads the partition again from the sink's offset
                continue
            if messages[0][1] < expected:
                # some are in the sink already (read again after a seek): keep the rest
                messages = [m for m in messages if m[1] >= expected]
                if not messages:
                    continue
                size = sum(len(m[2]) for m in messages if m[2] is not None)
            batch.messages.extend(messages)
            if partition not in first_offsets:
                first_offsets[partition] = messages[0][1]
            expected = messages[-1][1] + 1
            self.expected[partition] = expected
            batch.next_offsets[partition] = expected
            batch.value_bytes += size
            added += len(messages)
        return added

    def reached(
        self, owned: dict[int, Any], targets: dict[int, int], position: Callable[[Any], int | None]
    ) -> bool:
        """Every owned partition (number -> TopicPartition) has been read up to its target
        offset. Where the records read stop short of it, the consumer's ``position`` tells
        whether only records poll never returns lie between (a transaction marker, an
        aborted transaction): a topic whose last record is a commit marker ends too."""
        if not owned:
            return False
        for partition, tp in owned.items():
            expected = self.expected.get(partition)
            if expected is None:
                return False  # not seeked yet
            target = targets.get(partition, 0)
            if expected >= target:
                continue
            at = position(tp)
            if at is None or at < target:
                return False
        return True
