"""The pipelined writer: validation and the sink's writes run beside the consumer, one
batch behind it.

kafka-python decodes records in Python, so consuming takes a whole core: with it the sink
lives in one spawned process (:class:`ProcessWriter`) and writes a batch while the next is
consumed. librdkafka decodes in C on threads of its own, so with it the loop writes each
batch itself (:func:`writing_in_the_loop`, :class:`InProcessWriter`) while librdkafka
keeps fetching.
"""

from __future__ import annotations

import ctypes
import importlib.abc
import logging
import multiprocessing
import pickle
import signal
import sys
import time
from collections.abc import Callable
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any, Protocol

from antenna_elt.ingest.batch import Batch
from antenna_elt.ingest.sink import Sink

WriterDied = BrokenProcessPool
"""What a write's future raises when the writer process died."""

log = logging.getLogger("antenna_elt.ingest")


class Writer(Protocol):
    where: str
    """Where the sink writes, for the ingestor's first log line."""

    def prepare(self, batch: Batch) -> object:
        """What :meth:`submit` needs of ``batch`` that can be made before the previous
        write is done (the process writer's pickle of it), or None."""
        ...

    def submit(self, batch: Batch, prepared: object = None) -> Future[tuple[int, int]]:
        """Start writing ``batch`` (``prepared``: :meth:`prepare` of it, made after the
        batch's last change); the future gives (events, rejects) or the sink's error."""
        ...

    def restart(self) -> None:
        """Replace a writer that died (:data:`WriterDied`)."""
        ...

    def shutdown(self) -> None: ...


WriterFactory = Callable[[Callable[[], Sink]], Writer]


class InProcessWriter:
    """Writes in the calling thread with a sink of its own: the future is already done
    (:func:`writing_in_the_loop`; the unit tests)."""

    where = "the loop itself"

    def __init__(self, sink_factory: Callable[[], Sink]):
        self.sink_factory = sink_factory
        self.sink = sink_factory()

    def prepare(self, batch: Batch) -> object:
        return None

    def submit(self, batch: Batch, prepared: object = None) -> Future[tuple[int, int]]:
        future: Future[tuple[int, int]] = Future()
        try:
            future.set_result(self.sink.write(batch))
        except Exception as exc:
            future.set_exception(exc)
        return future

    def restart(self) -> None:
        self.sink.close()
        self.sink = self.sink_factory()

    def shutdown(self) -> None:
        self.sink.close()


def writing_in_the_loop(sink_factory: Callable[[], Sink]) -> InProcessWriter:
    """The writer of a client that decodes in C on threads of its own (librdkafka): the
    loop writes each batch itself, in its own thread, while librdkafka keeps fetching
    into its pre-fetch queue. The loop's Python work is then about a microsecond a
    message, so a second process buys no speed (a writer thread lost to the GIL even
    what overlap it gained) and costs a second interpreter (with pyarrow for the lake),
    the pickling of every batch and its copy on the other side: the lake ingestor's peak
    fell from ~250 to under 200 MiB and the PostgreSQL ingestor's from ~185 to ~100 MiB,
    at the same or a higher rate (README, Benchmarks). kafka-python decodes in Python,
    which takes a whole core: it keeps :class:`ProcessWriter`."""
    _refuse_unused_packages()
    return InProcessWriter(sink_factory)


def _refuse_unused_packages() -> None:
    """Install :class:`_NotImported` (once per process)."""
    if not any(isinstance(finder, _NotImported) for finder in sys.meta_path):
        sys.meta_path.insert(0, _NotImported())


class ProcessWriter:
    """One spawned process holding its own sink (built by ``sink_factory``, which must be
    picklable: a class, or functools.partial of one)."""

    where = "a writer process"

    def __init__(self, sink_factory: Callable[[], Sink]):
        self.sink_factory = sink_factory
        self._pool = self._new_pool()

    def _new_pool(self) -> ProcessPoolExecutor:
        return ProcessPoolExecutor(
            max_workers=1,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=_init,
            initargs=(self.sink_factory, _log_config()),
        )

    def prepare(self, batch: Batch) -> bytes:
        """The batch pickled, by the loop while the writer still writes the batch before:
        otherwise the pool pickles it once that write is done, and the writer waits for
        it (14 ms of every 20,000 messages; README, Benchmarks)."""
        return pickle.dumps(batch, protocol=pickle.HIGHEST_PROTOCOL)

    def submit(self, batch: Batch, prepared: object = None) -> Future[tuple[int, int]]:
        pickled = prepared if isinstance(prepared, bytes) else self.prepare(batch)
        try:
            return self._pool.submit(_write_pickled, pickled)
        except BrokenProcessPool:
            # the writer died between two batches (OOM killer, kill -9): nothing of this
            # batch was written; a new writer takes it (a death during a write shows in the
            # future instead, and the loop retries that batch)
            log.error("the writer process died while idle; starting a new one")
            self.restart()
            return self._pool.submit(_write_pickled, pickled)

    def restart(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._pool = self._new_pool()

    def shutdown(self) -> None:
        self._pool.shutdown(wait=True)


# -- inside the writer process -----------------------------------------------------------

_SINK: Sink | None = None


def _log_config() -> tuple[int, str | None, str | None]:
    """The parent's logging set-up, for the writer process (spawned processes start bare)."""
    root = logging.getLogger()
    for handler in root.handlers:
        if handler.formatter is not None:
            return root.level, handler.formatter._fmt, handler.formatter.datefmt
    return root.level, None, None


def _init(
    sink_factory: Callable[[], Sink],
    log_config: tuple[int, str | None, str | None] = (30, None, None),
) -> None:
    global _SINK
    level, fmt, datefmt = log_config
    if fmt is not None:  # the sink's own log lines (e.g. the lake's closed hours) show too
        logging.Formatter.converter = time.gmtime
        logging.basicConfig(level=level, format=fmt, datefmt=datefmt)
        logging.getLogger("kafka").setLevel(logging.CRITICAL)
    # the parent coordinates shutdown; die with it if it is killed (kill -9), so no
    # orphan keeps a transaction open
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    try:
        pr_set_pdeathsig = 1
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(pr_set_pdeathsig, signal.SIGKILL)
    except OSError:  # not Linux: the writer still exits when the parent closes the pool
        pass
    _refuse_unused_packages()
    _SINK = sink_factory()


NOT_IMPORTED = ("pandas", "numpy")
"""Packages the writer process refuses to import (:class:`_NotImported`)."""


class _NotImported(importlib.abc.MetaPathFinder):
    """Refuses to import pandas and numpy in the writer process. No sink uses them, but
    pyarrow imports them when installed (as they are beside dbt): pandas on its first
    ``pa.array`` of a Python list, to ask whether the list is a pandas object (37 MiB of
    the lake writer's peak), numpy when pyarrow itself is imported (10 MiB with its BLAS).
    pyarrow treats the refusal as the package not being installed (both are optional to
    it since pyarrow 16). README, Benchmarks."""

    def find_spec(self, name: str, path: Any = None, target: Any = None) -> None:
        top = name.partition(".")[0]
        if top in NOT_IMPORTED:
            raise ModuleNotFoundError(f"{top} is not imported in the writer process", name=name)
        return None


def _write_pickled(pickled: bytes) -> tuple[int, int]:
    assert _SINK is not None, "writer process not initialised"
    batch = pickle.loads(pickled)
    del pickled  # the batch's only copy from here (the caller's frame holds none)
    return _SINK.write(batch)
