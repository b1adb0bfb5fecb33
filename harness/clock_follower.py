"""Followers: make a process's own clock obey the harness's virtual clock.

A follower runs inside a process that must see virtual time (a gunicorn worker, the
embedded store). ``sync()`` reads the clock file and, when its ``seq`` changed, moves the
process's clock there with a *driver*, a time-faking library that patches
``time.time()``, ``datetime.now()`` and their relatives for every thread and asyncio task
of the process at once:

- ``time-machine`` (default): patches at the C level, leaves ``time.monotonic()`` and
  therefore asyncio's scheduling alone;
- ``freezegun``: also fakes ``time.monotonic()``, so it reaches in-process TTL caches that
  read it (cachetools' ``TTLCache`` does), at the price of needing care with asyncio and
  gunicorn's worker heartbeat (see ``FreezegunDriver``).

A process whose clock was never moved runs on the real clock, untouched.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import logging
import os
import threading
from pathlib import Path
from typing import Any, Protocol

from harness.clock_state import ClockState, real_monotonic_ns

log = logging.getLogger(__name__)

DRIVERS = ("time-machine", "freezegun")


class Driver(Protocol):
    """A time-faking library, applied to the whole process."""

    def apply(self, state: ClockState) -> None: ...

    def stop(self) -> None: ...


def _destination(state: ClockState) -> datetime.datetime:
    assert state.virtual_ns is not None
    seconds = state.now_ns(real_monotonic_ns()) / 1e9
    return datetime.datetime.fromtimestamp(seconds, tz=datetime.UTC)


class TimeMachineDriver:
    """Virtual time through time-machine: one traveller at a time, replaced on each move."""

    def __init__(self) -> None:
        import time_machine

        self._time_machine = time_machine
        self._traveller: Any = None

    def apply(self, state: ClockState) -> None:
        self.stop()
        if state.is_real:
            return
        self._traveller = self._time_machine.travel(_destination(state), tick=not state.frozen)
        self._traveller.start()

    def stop(self) -> None:
        if self._traveller is not None:
            self._traveller.stop()
            self._traveller = None


class FreezegunDriver:
    """Virtual time through freezegun, configured so that threads and asyncio work.

    freezegun's default ignore list leaves some modules' threads on the real clock, so it
    is emptied; ``real_asyncio=True`` keeps ``asyncio.sleep`` on the real clock (it hangs
    otherwise); and ``pydantic.v1`` is imported before the first freeze, because FastAPI
    workers crash with a metaclass conflict when it is first imported while frozen.
    """

    def __init__(self) -> None:
        import freezegun

        with contextlib.suppress(ImportError):
            import pydantic.v1  # noqa: F401
        freezegun.configure(default_ignore_list=[])
        self._freezegun = freezegun
        self._freezer: Any = None

    def apply(self, state: ClockState) -> None:
        self.stop()
        if state.is_real:
            return
        self._freezer = self._freezegun.freeze_time(
            _destination(state), tick=not state.frozen, real_asyncio=True)
        self._freezer.start()

    def stop(self) -> None:
        if self._freezer is not None:
            self._freezer.stop()
            self._freezer = None


def make_driver(name: str) -> Driver:
    if name == "time-machine":
        return TimeMachineDriver()
    if name == "freezegun":
        return FreezegunDriver()
    raise ValueError(f"unknown clock driver {name!r}: use one of {', '.join(DRIVERS)}")


class ClockFollower:
    """Apply the clock file's state to this process whenever it changes."""

    def __init__(self, path: Path, driver: Driver) -> None:
        self.path = path
        self.driver = driver
        self.applied_seq = 0
        self._last_bytes = b""
        self._lock = threading.Lock()

    def sync(self) -> int:
        """Apply the clock file if it changed since the last call; return the applied seq.

        The file is read on every call (tens of microseconds): its inode and mtime alone
        cannot tell two quick writes apart, because the filesystem's timestamps are coarse
        and a freed inode number can come back.
        """
        try:
            content = self.path.read_bytes()
        except FileNotFoundError:
            return self.applied_seq
        if content == self._last_bytes:
            return self.applied_seq

        with self._lock:
            if content == self._last_bytes:
                return self.applied_seq
            state = ClockState(**json.loads(content))
            if state.seq != self.applied_seq:
                self.driver.apply(state)
                self.applied_seq = state.seq
                log.debug("pid %d moved to virtual time %s (seq %d, %s)", os.getpid(),
                          state.virtual_ns, state.seq, "frozen" if state.frozen else "ticking")
            self._last_bytes = content
        return self.applied_seq
