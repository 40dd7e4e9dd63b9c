"""Worker processes: started, watched, restarted with backoff when they die, stopped."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from antenna_elt.clock import SYSTEM_CLOCK, Clock
from antenna_elt.ingest.retry import backoff

log = logging.getLogger("antenna_elt.run")

STABLE_SECONDS = 60.0
"""A worker that ran this long before dying is restarted at once, not after a backoff."""


def start_process(argv: Sequence[str], log_file: Path | None) -> Any:
    """The default way to start a worker: a child process, its output into ``log_file``."""
    out: IO[bytes] | int = subprocess.DEVNULL
    if log_file is not None:
        log_file.parent.mkdir(parents=True, exist_ok=True)
        out = open(log_file, "ab")  # noqa: SIM115 - handed to the child
    try:
        return subprocess.Popen(list(argv), stdout=out, stderr=subprocess.STDOUT)
    finally:
        if not isinstance(out, int):
            out.close()


@dataclass
class Worker:
    """One supervised child process (an ingestor)."""

    name: str
    argv: list[str]
    log_file: Path | None = None
    clock: Clock = SYSTEM_CLOCK
    spawn: Callable[[Sequence[str], Path | None], Any] = start_process
    process: Any = None
    started_at: float = 0.0
    restarts: int = 0
    failures: int = 0
    """Consecutive quick deaths (drives the backoff)."""
    next_start: float = 0.0
    exit_codes: list[int] = field(default_factory=list)

    @property
    def pid(self) -> int | None:
        return None if self.process is None else int(self.process.pid)

    def start(self) -> None:
        self.process = self.spawn(self.argv, self.log_file)
        self.started_at = self.clock.monotonic()
        log.info("%s started (pid %s)", self.name, self.pid)

    def check(self) -> None:
        """Restart the worker if it has died and its backoff has passed."""
        now = self.clock.monotonic()
        if self.process is None:
            if now >= self.next_start:
                self.restarts += 1
                self.start()
            return
        code = self.process.poll()
        if code is None:
            return
        self.exit_codes.append(int(code))
        ran = now - self.started_at
        self.failures = 0 if ran >= STABLE_SECONDS else self.failures + 1
        wait = 0.0 if self.failures == 0 else backoff(self.failures - 1)
        self.process = None
        self.next_start = now + wait
        how = f"signal {-code}" if code < 0 else f"exit code {code}"
        log.error(
            "%s died (%s) after %.0f s; restarting %s (see %s)",
            self.name,
            how,
            ran,
            "now" if wait == 0 else f"in {wait:.0f} s",
            self.log_file or "its output",
        )
        if wait == 0:
            self.restarts += 1
            self.start()

    def stop(self, timeout: float = 30.0) -> int | None:
        """SIGTERM (the ingestors flush their batch and exit 0), then SIGKILL after
        ``timeout`` seconds; returns the exit code."""
        if self.process is None:
            return None
        process, self.process = self.process, None
        if process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGTERM)
            try:
                return int(process.wait(timeout=timeout))
            except subprocess.TimeoutExpired:
                log.warning("%s did not stop within %.0f s; killing it", self.name, timeout)
                with contextlib.suppress(ProcessLookupError):
                    os.kill(process.pid, signal.SIGKILL)
                return int(process.wait())
        return int(process.returncode)
