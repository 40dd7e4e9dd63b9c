"""The sink protocol every ingestor's destination implements, and its two errors.

Like dlt, transient errors are told apart from terminal ones: :class:`SinkUnavailable`
is retried with backoff, :class:`StaleBatch` makes the loop re-read from the stored
offsets, anything else stops the ingestor.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol

from antenna_elt.ingest.batch import Batch


class StaleBatch(Exception):
    """The sink already holds some of these offsets (another consumer, or a write whose
    commit was acknowledged too late to see). Nothing was written; re-seek and go on."""


class SinkUnavailable(Exception):
    """The sink cannot be reached right now; the same batch is retried after a backoff."""


class Sink(Protocol):
    """Where a batch lands. ``write`` is atomic: rows, rejects and next offsets together;
    it returns how many events and rejects it wrote."""

    description: str

    def setup(self) -> None: ...

    def stored_offsets(self, topic: str, partitions: Iterable[int]) -> dict[int, int]:
        """Next offset to read per partition; partitions never written are absent."""
        ...

    def write(self, batch: Batch) -> tuple[int, int]: ...

    def close(self) -> None: ...


def first_line(exc: BaseException) -> str:
    """The first line of an error's text, or its class name: for one-line log messages."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
