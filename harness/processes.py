"""Child processes the harness starts, and how it stops them.

Every server of a run (the embedded store, a spawned ``redis-server``, the gunicorn
arbiter and its workers) is started through ``ChildProcess``. Each child leads a process
group of its own, so stopping it reaches the processes it forked (gunicorn's workers)
and nothing else. A Ctrl-C typed at the terminal therefore reaches only the harness,
which then stops its children in order. Each child also asks the kernel to
kill it if the harness dies without cleaning up (``PR_SET_PDEATHSIG``).

Stopping sends SIGTERM to the group, waits on the real monotonic clock, then sends
SIGKILL to whatever is left of the group.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import psutil

log = logging.getLogger(__name__)

_PR_SET_PDEATHSIG = 1


class StartError(RuntimeError):
    """A process of the run failed to start. The message names the cause and the fix."""


def _die_with_parent() -> None:
    """Ask Linux to SIGTERM this child when the process that forked it exits."""
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    except OSError:
        # Not Linux, or no libc by that name: teardown still works, only a harness
        # killed with SIGKILL can then leave children behind.
        pass


class ChildProcess:
    """One started process, the leader of its own process group."""

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        *,
        log_path: Path,
        env: dict[str, str] | None = None,
        cwd: Path | None = None,
        stdout: int | None = None,
    ) -> None:
        self.name = name
        self.argv = list(argv)
        self.log_path = log_path
        self._log_file = log_path.open("ab")
        try:
            self.popen = subprocess.Popen(
                self.argv,
                stdin=subprocess.DEVNULL,
                stdout=stdout if stdout is not None else self._log_file,
                stderr=self._log_file,
                env=env,
                cwd=cwd,
                start_new_session=True,
                preexec_fn=_die_with_parent,
            )
        except OSError as error:
            self._log_file.close()
            raise StartError(f"cannot start {name} ({self.argv[0]}): {error.strerror}") from error
        log.info("started %s with pid %d", name, self.popen.pid)

    @property
    def pid(self) -> int:
        return self.popen.pid

    def exit_code(self) -> int | None:
        """Return the exit code once the process has ended, else None."""
        return self.popen.poll()

    def log_tail(self, lines: int = 20) -> str:
        """Return the last lines of the process's log, for error messages."""
        try:
            text = self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def group_pids(self) -> list[int]:
        """Return the pids of every live process in this child's process group.

        Zombies are left out: they have exited and only wait for their parent to reap them.
        """
        pids = []
        for process in psutil.process_iter(["pid", "status"]):
            try:
                if (os.getpgid(process.pid) == self.pid
                        and process.info["status"] != psutil.STATUS_ZOMBIE):
                    pids.append(process.pid)
            except (ProcessLookupError, PermissionError):
                continue
        return pids

    def stop(self, timeout_s: float = 5.0) -> None:
        """Stop the process and its group: SIGTERM, then SIGKILL after ``timeout_s``."""
        try:
            if self.popen.poll() is None:
                self._signal_group(signal.SIGTERM)
                try:
                    self.popen.wait(timeout=timeout_s)
                except subprocess.TimeoutExpired:
                    log.warning("%s (pid %d) ignored SIGTERM for %.1f s; killing it",
                                self.name, self.pid, timeout_s)
                    self._signal_group(signal.SIGKILL)
                    self.popen.wait(timeout=timeout_s)
            self._reap_group(timeout_s)
            log.info("stopped %s (pid %d)", self.name, self.pid)
        finally:
            self._log_file.close()

    def _reap_group(self, timeout_s: float) -> None:
        """Wait for the group's other members (forked workers) to exit, then kill them.

        SIGKILL is delivered asynchronously, so the group is waited for once more after it.
        """
        if wait_until(lambda: not self.group_pids(), timeout_s=timeout_s, interval_s=0.05):
            return
        self._signal_group(signal.SIGKILL)
        if not wait_until(lambda: not self.group_pids(), timeout_s=timeout_s, interval_s=0.01):
            log.error("processes %s of %s's group survived SIGKILL", self.group_pids(), self.name)

    def _signal_group(self, signum: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.pid, signum)


def wait_until(
    condition: Callable[[], bool],
    *,
    timeout_s: float,
    interval_s: float = 0.02,
    failure: Callable[[], str | None] | None = None,
) -> bool:
    """Poll ``condition`` on the monotonic clock until it holds or ``timeout_s`` passes.

    ``failure`` is checked between polls; when it returns a message, waiting stops
    early with a StartError carrying it (for example, the process being waited on died).
    """
    deadline = time.monotonic() + timeout_s
    while True:
        if condition():
            return True
        if failure is not None:
            message = failure()
            if message:
                raise StartError(message)
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval_s)


def free_port(host: str = "127.0.0.1") -> int:
    """Return a TCP port on ``host`` that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


def check_port_free(port: int, host: str = "127.0.0.1") -> None:
    """Raise StartError naming the process that listens on ``port``, if one does."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        try:
            probe.bind((host, port))
            return
        except OSError:
            pass
    raise StartError(f"port {port} on {host} is in use{_port_holder(port)}; "
                     "choose another port or stop that process")


def _port_holder(port: int) -> str:
    try:
        connections = psutil.net_connections(kind="tcp")
    except (psutil.AccessDenied, OSError):
        return ""
    for connection in connections:
        if connection.laddr and connection.laddr.port == port and connection.pid:
            try:
                name = psutil.Process(connection.pid).name()
            except psutil.Error:
                name = "unknown"
            return f" by {name} (pid {connection.pid})"
    return ""
