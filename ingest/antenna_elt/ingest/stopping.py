"""SIGINT and SIGTERM ask a long-running ingestor to stop: it finishes the batch in hand,
then exits (the ingest loop, and the Spark job's driver)."""

from __future__ import annotations

import logging
import signal
import threading
from types import FrameType


class StopOnSignal:
    """A stop flag (``self._stop``, set up by the subclass) that :meth:`stop` and, once
    :meth:`install_signal_handlers` ran, SIGINT and SIGTERM set, with one log line."""

    _stop: threading.Event
    _stop_log: logging.Logger
    _stop_doing: str
    """What the process does before exiting, for the log line."""

    def stop(self, *_: object) -> None:
        if not self._stop.is_set():
            self._stop_log.info("stop requested: %s, then exiting", self._stop_doing)
        self._stop.set()

    def install_signal_handlers(self) -> None:
        def handler(signum: int, _frame: FrameType | None) -> None:
            self.stop()

        signal.signal(signal.SIGINT, handler)
        signal.signal(signal.SIGTERM, handler)
