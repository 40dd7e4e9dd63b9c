"""The one retry-with-backoff helper of the ingestors (Kafka connection, sink writes,
stored offsets): 1, 2, 4, 8, 16, 30, 30, ... seconds between attempts."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")

MAX_BACKOFF = 30.0


def backoff(attempt: int) -> float:
    """Seconds to wait after the ``attempt``-th failure (0-based)."""
    return float(min(MAX_BACKOFF, 2 ** min(attempt, 5)))


def retry(
    attempt: Callable[[], T],
    *,
    retry_on: type[BaseException] | tuple[type[BaseException], ...],
    on_failure: Callable[[BaseException, float], None],
    wait: Callable[[float], object],
    failed: BaseException | None = None,
) -> T:
    """Call ``attempt`` until it returns, waiting ``backoff`` seconds after each failure
    of a ``retry_on`` kind. Before each wait ``on_failure(error, seconds)`` says so (a log
    line) or gives up by raising. ``wait(seconds)`` waits (it may return early, e.g. when
    a stop is requested: the next attempt is then the last unless it succeeds, because
    ``on_failure`` sees the stop). With ``failed``, the first attempt already failed
    elsewhere with that error (e.g. in the writer process)."""
    tries = 0
    error = failed
    while True:
        if error is not None:
            seconds = backoff(tries)
            tries += 1
            on_failure(error, seconds)
            wait(seconds)
        try:
            return attempt()
        except retry_on as exc:
            error = exc
