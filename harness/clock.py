"""Virtual time: one clock that the harness moves and every worker and the store obey.

TTL bugs take minutes or hours of real time to show. With a virtual clock the harness
freezes time, jumps an hour ahead and watches keys expire in milliseconds. The clock is a
small shared file (see ``harness.clock_state``). The harness writes it and never applies
it to its own process: faking time here would also fake the harness's own deadlines and
HTTP timeouts. Followers apply it: each gunicorn worker syncs before every request (see
``harness.worker_hooks``), and the store follows in the way its kind allows (see
``harness.store``).

A *move* is complete only when every follower has taken it. ``VirtualClock`` therefore
writes the file, waits for the store, then sends one request through each pinned
connection so that every worker syncs, and only then records the move in the history.

Operations: ``freeze`` (stand still at a time), ``tick`` (run at the real rate from a
time), ``advance`` (jump ahead by seconds), ``move_to`` (jump to a time) and ``now_ns``.
A forward jump longer than the staleness bound while scans are open would look, to the
service, like workers that stopped sending heartbeats, so it is rejected unless the step
declares that it simulates a hung or dead worker.

Example, from a scenario::

    ctx.clock.freeze()
    accepted = ctx.discover(route=0)
    ctx.poll_until_terminal(accepted.scan_id)
    ctx.clock.advance(600 + 1)   # one second past retention, on every worker and the store
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Protocol

from harness.clock_state import (
    ClockState,
    read_state,
    real_monotonic_ns,
    virtual_now_ns,
    write_state,
)
from harness.history import Function, History, HistoryRecorder, OpType

__all__ = ["ClockError", "VirtualClock", "open_scans", "virtual_now_ns"]

log = logging.getLogger(__name__)

NS_PER_S = 1_000_000_000


class ClockError(RuntimeError):
    """A clock move that cannot be made. The message names the reason and what to do instead."""


class ClockStore(Protocol):
    """The part of a store that follows the clock."""

    name: str

    def validate_clock_move(self, previous: ClockState, state: ClockState) -> None: ...

    def apply_clock(self, previous: ClockState, state: ClockState) -> None: ...


def open_scans(history: History, scenario: str | None = None) -> set[str]:
    """Return the scans accepted in ``history`` that no read has yet seen terminal.

    With ``scenario``, only the scans that scenario accepted count: a step answers for its
    own scans, not for ones an earlier scenario lost track of.
    """
    accepted = set()
    finished = set()
    for op in history.ops:
        if op.type is not OpType.OK or op.scan_id is None:
            continue
        if scenario is not None and op.scenario != scenario:
            continue
        status = (op.value or {}).get("status")
        if op.f is Function.DISCOVER:
            accepted.add(op.scan_id)
        elif status in ("complete", "failed"):
            finished.add(op.scan_id)
    return accepted - finished


class VirtualClock:
    """The harness's handle on the run's virtual clock."""

    def __init__(
        self,
        path: Path,
        *,
        stale_s: float,
        store: ClockStore | None = None,
        sync_workers: Callable[[int], None] | None = None,
        recorder: HistoryRecorder | None = None,
    ) -> None:
        self.path = path
        self.stale_s = stale_s
        self.store = store
        self.sync_workers = sync_workers
        self.recorder = recorder
        self._state = read_state(path)
        if not path.exists():
            write_state(path, self._state)

    @property
    def state(self) -> ClockState:
        return self._state

    def now_ns(self) -> int:
        """Return the virtual time now, computed from the shared state, never patched."""
        return self._state.now_ns()

    def now_s(self) -> float:
        return self.now_ns() / NS_PER_S

    def freeze(self, at_s: float | None = None, *, scenario: str | None = None) -> None:
        """Stand virtual time still at ``at_s`` (default: now), rounded down to a second.

        Frozen instants are whole seconds because a spawned redis-server follows the clock
        through libfaketime, whose frozen timestamps have one-second resolution.
        """
        target_ns = self.now_ns() if at_s is None else int(at_s * NS_PER_S)
        target_ns = (target_ns // NS_PER_S) * NS_PER_S
        self._move("freeze", target_ns, frozen=True, simulates_dead_worker=False,
                   scenario=scenario)

    def tick(self, from_s: float | None = None, *, scenario: str | None = None) -> None:
        """Let virtual time run at the real rate from ``from_s`` (default: now)."""
        target_ns = self.now_ns() if from_s is None else int(from_s * NS_PER_S)
        self._move("tick", target_ns, frozen=False, simulates_dead_worker=False,
                   scenario=scenario)

    def advance(self, seconds: float, *, simulates_dead_worker: bool = False,
                scenario: str | None = None) -> None:
        """Jump ``seconds`` ahead, keeping the clock frozen or ticking as it was."""
        if seconds < 0 or not math.isfinite(seconds):
            raise ClockError(f"advance takes a finite number of seconds >= 0, got {seconds}; "
                             "use move_to() to go back in time")
        from_ns = self.now_ns()
        self._move("advance", from_ns + int(seconds * NS_PER_S), frozen=self._state.frozen,
                   simulates_dead_worker=simulates_dead_worker, scenario=scenario,
                   from_ns=from_ns)

    def move_to(self, at_s: float, *, simulates_dead_worker: bool = False,
                scenario: str | None = None) -> None:
        """Jump to ``at_s`` (seconds since the epoch), forward or back."""
        self._move("move", int(at_s * NS_PER_S), frozen=self._state.frozen,
                   simulates_dead_worker=simulates_dead_worker, scenario=scenario)

    def _move(self, action: str, target_ns: int, *, frozen: bool, simulates_dead_worker: bool,
              scenario: str | None, from_ns: int | None = None) -> None:
        previous = self._state
        if from_ns is None:
            from_ns = self.now_ns()
        self._check_staleness(from_ns, target_ns, simulates_dead_worker, scenario)
        state = ClockState(seq=previous.seq + 1, virtual_ns=target_ns, frozen=frozen,
                           ref_monotonic_ns=real_monotonic_ns())
        if self.store is not None:
            self.store.validate_clock_move(previous, state)

        write_state(self.path, state)
        self._state = state
        if self.store is not None:
            self.store.apply_clock(previous, state)
        if self.sync_workers is not None:
            self.sync_workers(state.seq)

        log.info("virtual clock %s: %+.3f s to %.3f (%s, seq %d)", action,
                 (target_ns - from_ns) / NS_PER_S, target_ns / NS_PER_S,
                 "frozen" if frozen else "ticking", state.seq)
        if self.recorder is not None:
            self.recorder.record_clock_move(
                action=action, from_virtual_ns=from_ns, to_virtual_ns=target_ns,
                frozen=frozen, seq=state.seq, simulates_dead_worker=simulates_dead_worker,
                scenario=scenario)

    def _check_staleness(self, from_ns: int, target_ns: int, simulates_dead_worker: bool,
                         scenario: str | None) -> None:
        jump_s = (target_ns - from_ns) / NS_PER_S
        if jump_s <= self.stale_s or simulates_dead_worker or self.recorder is None:
            return
        scans = open_scans(self.recorder.history, scenario)
        if scans:
            raise ClockError(
                f"a jump of {jump_s:.0f} s is longer than stale_s ({self.stale_s:.0f} s) while "
                f"{len(scans)} scan(s) are open ({_sample(scans)}); the service would see "
                "their workers' heartbeats as stopped. Wait for the scans to finish, jump in "
                "steps shorter than stale_s, or pass simulates_dead_worker=True if that is "
                "the point of the step"
            )


def _sample(scan_ids: Iterable[str], limit: int = 3) -> str:
    ordered = sorted(scan_ids)
    shown = ", ".join(ordered[:limit])
    return shown + (", ..." if len(ordered) > limit else "")

