"""The ingestors' progress lines: a line every ``interval`` seconds with events, rejects,
rate and consumer lag per partition, and a summary at the end."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from antenna_elt.clock import Clock
from antenna_elt.ingest.kafka import LagReport

log = logging.getLogger("antenna_elt.ingest")


@dataclass
class Stats:
    events: int = 0
    rejects: int = 0
    batches: int = 0
    stale_batches: int = 0
    started: float = 0.0

    @property
    def messages(self) -> int:
        return self.events + self.rejects


class Progress:
    def __init__(self, stats: Stats, clock: Clock, interval: float, bootstrap_servers: str):
        self.stats = stats
        self.clock = clock
        self.interval = interval
        self.lag = LagReport(bootstrap_servers)
        self._last = clock.monotonic()
        self._last_messages = 0

    def maybe_log(self, consumer: Any, position: Callable[[int], int]) -> None:
        now = self.clock.monotonic()
        if now - self._last < self.interval:
            return
        interval = now - self._last
        done = self.stats.messages
        rate = (done - self._last_messages) / interval if interval else 0.0
        self._last, self._last_messages = now, done
        log.info(
            "ingested %d events, %d rejects (%.0f msg/s over the last %.0f s); lag %s",
            self.stats.events,
            self.stats.rejects,
            rate,
            interval,
            self.lag.text(consumer, position),
        )

    def summary(self) -> None:
        elapsed = self.clock.monotonic() - self.stats.started
        rate = self.stats.messages / elapsed if elapsed else 0.0
        log.info(
            "done: %d events and %d rejects in %d batches, %.1f s (%.0f msg/s)",
            self.stats.events,
            self.stats.rejects,
            self.stats.batches,
            elapsed,
            rate,
        )
