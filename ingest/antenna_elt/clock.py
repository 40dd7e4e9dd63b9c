"""Time, injected where logic depends on it, so that unit tests drive it with a fake."""

from __future__ import annotations

import threading
import time


class Clock:
    """The real clock: monotonic time for intervals, wall time for event-time logic."""

    def monotonic(self) -> float:
        return time.monotonic()

    def time(self) -> float:
        return time.time()

    def wait(self, seconds: float, stop: threading.Event | None = None) -> bool:
        """Sleep ``seconds``, or less when ``stop`` is set; True when stopped."""
        if stop is None:
            time.sleep(seconds)
            return False
        return stop.wait(seconds)


SYSTEM_CLOCK = Clock()
