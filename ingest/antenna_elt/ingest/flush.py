"""When to flush a batch (Meltano SDK's ``batch_strategies`` idea): by count, by size,
by age. The age is measured on an injected clock."""

from __future__ import annotations

from dataclasses import dataclass

from antenna_elt.clock import SYSTEM_CLOCK, Clock
from antenna_elt.ingest.batch import Batch

MAX_POLL_MS = 500


@dataclass(frozen=True)
class FlushPolicy:
    max_messages: int
    """Flush when a batch holds this many messages."""
    max_age: float
    """Flush when the oldest message of a batch is this many seconds old."""
    max_bytes: int | None = None
    """Flush when the message values of a batch add up to this many bytes."""
    clock: Clock = SYSTEM_CLOCK

    def due(self, batch: Batch) -> bool:
        if not len(batch):
            return False
        if len(batch) >= self.max_messages:
            return True
        if self.max_bytes is not None and batch.value_bytes >= self.max_bytes:
            return True
        return self.age(batch) >= self.max_age

    def age(self, batch: Batch) -> float:
        return self.clock.monotonic() - batch.started if len(batch) else 0.0

    def room(self, batch: Batch) -> int:
        """How many more messages the batch takes before it is full (at least 1)."""
        return max(1, self.max_messages - len(batch))

    def poll_timeout_ms(self, batch: Batch) -> int:
        """How long a poll may wait: not past the batch's deadline, at most 0.5 s."""
        if not len(batch):
            return MAX_POLL_MS
        left = self.max_age - self.age(batch)
        return max(0, min(MAX_POLL_MS, int(left * 1000)))
