"""Locust as a child process: start it headless, wait until it stops by itself, reap it.

Locust patches the standard library with gevent when it is imported, so the harness
never imports it. It runs ``python -m locust`` as a ``ChildProcess`` that leads its own
process group. With ``--processes P``, Locust forks P workers into that group, so
stopping the child reaches them too. Locust stops itself after ``--run-time``. If it has
not exited within the run time plus a start-up budget, the harness stops it and reports
the overrun as an error.
"""

from __future__ import annotations

import logging
import os
import re
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from harness.load import LOCUSTFILE
from harness.load.recording import LoadSettings
from harness.processes import ChildProcess, free_port

log = logging.getLogger(__name__)

STARTUP_BUDGET_S = 30.0
"""Time allowed, beyond the run time and the stop timeout, for Locust to import, spawn
its users, stop them and write its statistics."""

STOP_TIMEOUT_S = 3
"""Seconds that Locust lets each user finish its current scan after the run time ends.

With ``--processes``, users are stopped at once instead. After the run time, Locust
2.47's master waits only half a second for its workers' final statistics. Requests sent
while the workers wait for their users would then be in the history but not in
Locust's table."""

_TIMESPAN = re.compile(r"(?:(?P<hours>\d+)h)?(?:(?P<minutes>\d+)m)?(?:(?P<seconds>\d+)s)?")


def parse_run_time(text: str) -> int:
    """Return the seconds of a Locust time span (``30``, ``30s``, ``5m``, ``1h30m``).

    Raises ValueError naming the text and the accepted forms. The harness parses it
    itself because importing Locust's own parser would patch this process with gevent.
    """
    text = text.strip()
    if text.isdigit():
        seconds = int(text)
    else:
        match = _TIMESPAN.fullmatch(text)
        if not text or match is None:
            raise ValueError(f"invalid run time {text!r}: use seconds (30) or a span such "
                             "as 30s, 5m or 1h30m")
        parts = {name: int(value) for name, value in match.groupdict().items() if value}
        seconds = (parts.get("hours", 0) * 3600 + parts.get("minutes", 0) * 60
                   + parts.get("seconds", 0))
    if seconds < 1:
        raise ValueError(f"invalid run time {text!r}: it must be at least 1 second")
    return seconds


@dataclass(frozen=True, slots=True)
class LocustOptions:
    """How much load: users, how fast they start, for how long, in how many processes."""

    users: int
    spawn_rate: float
    """Users started per second."""

    run_time_s: int
    processes: int = 1
    """1 runs the users in one Locust process; P > 1 runs Locust's ``--processes P``,
    a master and P worker processes."""

    @property
    def stop_timeout_s(self) -> int:
        return STOP_TIMEOUT_S if self.processes == 1 else 0

    @property
    def timeout_s(self) -> float:
        """How long the harness waits for Locust to stop by itself."""
        return self.run_time_s + self.stop_timeout_s + STARTUP_BUDGET_S


@dataclass(slots=True)
class LocustExit:
    """The end of a Locust run: exit code, duration and what went wrong."""

    exit_code: int | None
    """Locust's exit code, or None when the harness had to stop it."""

    duration_s: float
    error: str | None = None
    pids: tuple[int, ...] = ()
    """Every pid of Locust's process group that was seen while it ran, so that tests can
    check that none of them is left."""


def locust_argv(host: str, options: LocustOptions) -> list[str]:
    """Return the command line of a headless Locust run of the scan users against ``host``."""
    argv = [
        sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--headless",
        "--host", host, "--users", str(options.users),
        "--spawn-rate", f"{options.spawn_rate:g}", "--run-time", f"{options.run_time_s}s",
        "--stop-timeout", f"{options.stop_timeout_s}s", "--only-summary", "--loglevel", "INFO",
        # Failures are counted from the statistics; a non-zero exit means Locust broke.
        "--exit-code-on-error", "0",
    ]
    if options.processes > 1:
        # The forked workers read --master-port and the master --master-bind-port; a
        # free port of each run's own lets runs proceed side by side.
        port = str(free_port())
        argv += ["--processes", str(options.processes), "--master-bind-host", "127.0.0.1",
                 "--master-bind-port", port, "--master-port", port]
    return argv


def run_locust(host: str, options: LocustOptions, settings: LoadSettings,
               log_path: Path, app_env: Mapping[str, str] | None = None) -> LocustExit:
    """Run Locust until it stops by itself, or stop it at ``options.timeout_s``.

    ``app_env`` joins Locust's environment, for a profile's token function to read as
    the app's. Locust's process and every process it forked are gone when this returns,
    also when it raises (KeyboardInterrupt included).
    """
    env = {**os.environ, **(app_env or {}), **settings.to_env()}
    started = time.monotonic()
    child = ChildProcess("locust", locust_argv(host, options), log_path=log_path, env=env)
    pids = {child.pid}
    try:
        exit_code, error = _wait(child, options, pids)
    finally:
        pids.update(child.group_pids())
        child.stop()
    return LocustExit(exit_code, time.monotonic() - started, error, tuple(sorted(pids)))


def _wait(child: ChildProcess, options: LocustOptions,
          pids: set[int]) -> tuple[int | None, str | None]:
    deadline = time.monotonic() + options.timeout_s
    expected = 1 + options.processes if options.processes > 1 else 1
    # Note the forked workers once they run, so that callers can check they are gone.
    while (len(pids) < expected and child.exit_code() is None
           and time.monotonic() < deadline):
        pids.update(child.group_pids())
        time.sleep(0.1)

    try:
        exit_code = child.popen.wait(timeout=max(0.0, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        log.error("Locust (pid %d) was still running %.0f s after it started, though its "
                  "run time is %d s; stopping it", child.pid, options.timeout_s,
                  options.run_time_s)
        return None, (f"Locust did not stop within {options.timeout_s:.0f} s (run time "
                      f"{options.run_time_s} s); it was stopped, see {child.log_path}")
    if exit_code != 0:
        return exit_code, (f"Locust exited with code {exit_code}: "
                           f"{_last_error_line(child.log_tail(30))}; see {child.log_path}")
    return exit_code, None


def _last_error_line(tail: str) -> str:
    lines = [line for line in tail.splitlines() if line.strip()]
    for line in reversed(lines):
        if "error" in line.lower():
            return line.strip()
    return lines[-1].strip() if lines else "no output"

