"""The virtual clock's shared state: one small JSON file that every follower reads.

This module is imported inside gunicorn workers and the embedded store, so it depends on
the standard library only. The harness writes the file (see ``harness.clock``); the
followers read it (see ``harness.clock_follower``).

The file holds one *clock state*:

- ``seq``: a number that grows with every write, so a follower can tell a new state from
  one it has applied;
- ``virtual_ns``: the virtual time, in nanoseconds since the epoch, at the moment the
  state was written, or null while the clock is the real clock (no move yet);
- ``frozen``: whether virtual time stands still (true) or ticks at the real rate (false);
- ``ref_monotonic_ns``: the real monotonic clock (CLOCK_MONOTONIC, shared by every process
  on the machine) at the moment of writing. A ticking clock's time at real monotonic
  instant m is ``virtual_ns + (m - ref_monotonic_ns)``.

Every process computes virtual time from the same reference, so they agree without
talking to each other. Real monotonic time is read with ``clock_gettime_ns``, which
neither freezegun nor time-machine fakes.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

CLOCK_FILE_ENV = "SCAN_HARNESS_CLOCK_FILE"
CLOCK_DRIVER_ENV = "SCAN_HARNESS_CLOCK_DRIVER"


def real_monotonic_ns() -> int:
    """Return the real monotonic clock, whatever a time-faking library patched."""
    return time.clock_gettime_ns(time.CLOCK_MONOTONIC)


def real_time_ns() -> int:
    """Return the real wall-clock time, whatever a time-faking library patched."""
    return time.clock_gettime_ns(time.CLOCK_REALTIME)


@dataclass(frozen=True, slots=True)
class ClockState:
    """One write of the clock file."""

    seq: int = 0
    virtual_ns: int | None = None
    frozen: bool = False
    ref_monotonic_ns: int = 0

    @property
    def is_real(self) -> bool:
        """Whether the clock is still the real clock (nothing was ever moved)."""
        return self.virtual_ns is None

    def now_ns(self, monotonic_ns: int | None = None) -> int:
        """Return the virtual time at real monotonic instant ``monotonic_ns`` (default: now)."""
        if self.virtual_ns is None:
            return real_time_ns()
        if self.frozen:
            return self.virtual_ns
        instant = real_monotonic_ns() if monotonic_ns is None else monotonic_ns
        return self.virtual_ns + (instant - self.ref_monotonic_ns)


def write_state(path: Path, state: ClockState) -> None:
    """Replace the clock file atomically, so a reader sees the old state or the new one."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temporary.write_text(json.dumps(asdict(state)), encoding="utf-8")
    os.replace(temporary, path)


def read_state(path: Path) -> ClockState:
    """Read the clock file; a missing file is the real clock."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return ClockState()
    return ClockState(**data)


def virtual_now_ns() -> int:
    """Return the run's virtual time from the file named by SCAN_HARNESS_CLOCK_FILE.

    Without that variable, or before the first move, this is the real wall-clock time.
    """
    path = os.environ.get(CLOCK_FILE_ENV)
    if not path:
        return real_time_ns()
    return read_state(Path(path)).now_ns()
