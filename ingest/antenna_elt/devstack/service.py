"""The one life cycle of the servers the project starts itself (Kafka, PostgreSQL,
Superset): already running? port taken? spawn, pid file, wait until it answers or dies
(with the end of its log), stop."""

from __future__ import annotations

import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from antenna_elt.devstack.processes import pid_alive, port_open, read_pid, stop_pid, tail
from antenna_elt.errors import UserError


@dataclass(frozen=True)
class Service:
    name: str
    """As messages name it: "the Kafka broker", "PostgreSQL", "Superset"."""
    port: int
    pidfile: Path
    logfile: Path
    answers: Callable[[], bool]
    """Does it serve requests (a cheap client call)?"""
    start_timeout: float
    port_taken_hint: str
    """What to do when another program holds the port (the end of that message)."""
    answer_target: str = ""
    """What it must answer, in messages (e.g. " http://127.0.0.1:8088/health")."""
    owns_pidfile: bool = True
    """False when the server writes its own pid file (PostgreSQL's postmaster.pid)."""
    stop_timeout: float = 30.0
    stop_group: bool = False
    """SIGKILL the whole process group on a stop that times out (a session leader whose
    workers must not outlive it, like gunicorn)."""

    # -- state ------------------------------------------------------------------------

    def pidfile_entry(self) -> tuple[int, int | None] | None:
        """(pid, port) of the process this service's pid file names, if it still runs."""
        pid = read_pid(self.pidfile)
        if pid is None or not pid_alive(pid):
            return None
        try:
            fields = self.pidfile.read_text().split()
            port = int(fields[1]) if len(fields) > 1 and self.owns_pidfile else None
        except (OSError, ValueError):
            port = None
        return pid, port

    def running_pid(self) -> int | None:
        entry = self.pidfile_entry()
        return entry[0] if entry else None

    def tail(self) -> str:
        return tail(self.logfile)

    # -- start ------------------------------------------------------------------------

    def start(self, launch: Callable[[], int | None]) -> tuple[int, bool]:
        """Start the service with ``launch`` (which returns the new pid) unless it runs;
        return when it answers. Returns (pid, whether this call started it)."""
        pid = self.running_pid()
        if pid is not None:
            self.wait_until_answers(pid)
            return pid, False
        if port_open(self.port):
            raise UserError(f"port {self.port} is taken by another program: {self.port_taken_hint}")
        new_pid = launch()
        if new_pid is None:
            raise UserError(
                f"{self.name} exited while starting; last lines of {self.logfile}:\n{self.tail()}"
            )
        self.wait_until_answers(new_pid)
        return new_pid, True

    def spawn(self, cmd: list[str], *, cwd: Path, env: dict[str, str] | None = None) -> int:
        """Start ``cmd`` detached (its own session), output appended to the log, and
        record its pid (and port) in the pid file."""
        with open(self.logfile, "ab") as out:
            proc = subprocess.Popen(
                cmd,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                cwd=cwd,
                env=env,
            )
        self.pidfile.write_text(f"{proc.pid} {self.port}\n")
        return proc.pid

    def wait_until_answers(self, pid: int) -> None:
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            if not pid_alive(pid):
                raise UserError(
                    f"{self.name} exited while starting; last lines of {self.logfile}:\n"
                    f"{self.tail()}"
                )
            if port_open(self.port) and self.answers():
                return
            time.sleep(0.5)
        raise UserError(
            f"{self.name} did not answer{self.answer_target} within {self.start_timeout:.0f} s; "
            f"last lines of {self.logfile}:\n{self.tail()}"
        )

    # -- stop -------------------------------------------------------------------------

    def stop(self, terminate: Callable[[int], None] | None = None) -> int | None:
        """Stop the process (``terminate(pid)``, default SIGTERM then SIGKILL after
        ``stop_timeout``); returns its pid, or None when it was not running."""
        pid = self.running_pid()
        if pid is not None:
            if terminate is None:
                stop_pid(pid, self.stop_timeout, group=self.stop_group)
            else:
                terminate(pid)
        if self.owns_pidfile:
            self.pidfile.unlink(missing_ok=True)
        return pid

    def kill(self) -> None:
        """SIGKILL the process at once (crash tests)."""
        pid = self.running_pid()
        if pid is not None:
            stop_pid(pid, 0.0, signal.SIGKILL)
