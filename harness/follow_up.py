"""The end of a run: follow every open scan until it ends or its deadline has passed.

The terminates invariant judges whether every accepted scan was seen complete or failed
within ``deadline_s`` of virtual time after its POST. A scan that no client read after
its deadline has no verdict. Scenarios and load users stop polling when they are done,
so at the end of a run the harness follows up on every *open* scan (accepted, never seen
terminal):

1. it polls the open scans, round-robin over the workers, for a few seconds of real
   time, which lets scans that are merely slow finish;
2. for scans still open, it moves virtual time past the latest of their deadlines, as a
   step that simulates a dead worker (the scans' heartbeats see the jump), and reads
   each of them again.

A correct service reports a scan whose worker died ``failed`` once its heartbeat is
older than ``stale_s``, which is shorter than ``deadline_s``. A service that leaves it
``scanning`` fails terminates on the read after the jump.

Scans whose data a data-losing store action may have erased, and scans that answer only
``not_found`` for ``lost_after_s``, are not followed: terminates has no verdict for them.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from harness.client import Route, RoutingClient
from harness.clock import ClockError, VirtualClock
from harness.history import Function, History, OpType

log = logging.getLogger(__name__)

NS_PER_S = 1_000_000_000
TERMINAL_STATES = frozenset({"complete", "failed"})

# A margin past the deadline, so that a read's invoke is after it on every clock.
PAST_DEADLINE_S = 1.0


@dataclass(frozen=True, slots=True)
class OpenScan:
    """An accepted scan that no read has yet seen complete or failed."""

    scan_id: str
    user: str
    scenario: str | None
    deadline_ns: int
    """Virtual time by which the scan must have ended: its POST's invoke plus deadline_s."""


def find_open_scans(history: History, deadline_s: float) -> list[OpenScan]:
    """Return the open scans of ``history``, in the order they were accepted.

    Scans accepted before a data-losing store action ended are left out, because their
    records may be gone.
    """
    invokes = {op.index: op for op in history.ops if op.type is OpType.INVOKE}
    lost_until_ns = max((window.real_end_ns for window in history.nemesis_windows
                         if window.data_lost), default=-1)
    accepted: dict[str, OpenScan] = {}
    finished: set[str] = set()
    for op in history.ops:
        if op.type is not OpType.OK or op.scan_id is None:
            continue
        if op.f is Function.DISCOVER:
            invoke = invokes.get(op.invoke_index if op.invoke_index is not None else -1)
            started = invoke if invoke is not None else op
            if started.real_ns <= lost_until_ns:
                continue
            accepted[op.scan_id] = OpenScan(
                op.scan_id, op.user, op.scenario,
                started.virtual_ns + round(deadline_s * NS_PER_S))
        elif (op.value or {}).get("status") in TERMINAL_STATES:
            finished.add(op.scan_id)
    return [scan for scan_id, scan in accepted.items() if scan_id not in finished]


def follow_open_scans(
    client: RoutingClient,
    clock: VirtualClock | None,
    history: History,
    *,
    deadline_s: float,
    settle_s: float = 3.0,
    lost_after_s: float = 1.5,
    poll_interval_s: float = 0.03,
    stop_at: float | None = None,
) -> list[tuple[str | None, str]]:
    """Poll the open scans until each ended or its deadline passed.

    Returns notes for the report: (scenario, text) for each scan that was lost, or still
    open after its deadline, and (None, text) when virtual time could not move.

    ``settle_s`` is the real time given to slow scans before virtual time jumps, and
    ``stop_at`` (a ``time.monotonic()`` value) is the run's time cap. Every read is
    recorded under the scenario that accepted the scan, as its owner.
    """
    pending = find_open_scans(history, deadline_s)
    if not pending:
        return []
    log.info("following up on %d open scans", len(pending))
    notes: list[tuple[str | None, str]] = []
    process = client.new_process()
    limit = time.monotonic() + settle_s
    if stop_at is not None:
        limit = min(limit, stop_at)

    pending = _poll(client, pending, process, limit, lost_after_s, poll_interval_s, notes)
    if not pending or clock is None:
        return notes
    if stop_at is not None and time.monotonic() >= stop_at:
        notes.append((None, f"the run's time cap left {len(pending)} open scans unread "
                            "after their deadline"))
        return notes

    jump_s = (max(scan.deadline_ns for scan in pending) - clock.now_ns()) / NS_PER_S
    if jump_s > 0:
        try:
            clock.advance(jump_s + PAST_DEADLINE_S, simulates_dead_worker=True)
        except ClockError as error:
            notes.append((None, f"could not move virtual time past the deadline of "
                                f"{len(pending)} open scans: {error}"))
            return notes
    after_jump = time.monotonic() + 1.0
    if stop_at is not None:
        after_jump = min(after_jump, stop_at)
    still_open = _poll(client, pending, process, after_jump, lost_after_s, poll_interval_s,
                       notes)
    for scan in still_open:
        notes.append((scan.scenario, f"scan {scan.scan_id} was still open after its deadline"))
    return notes


def _poll(client: RoutingClient, scans: list[OpenScan], process: int, until: float,
          lost_after_s: float, poll_interval_s: float,
          notes: list[tuple[str | None, str]]) -> list[OpenScan]:
    """Poll each scan in turn until it is terminal, lost, or ``until`` passes (at least
    once each); return the scans still open."""
    pending = list(scans)
    not_found_since: dict[str, float] = {}
    while pending:
        for scan in list(pending):
            answer = client.status(scan.user, scan.scan_id, route=Route.NEXT,
                                   process=process, scenario=scan.scenario)
            if answer.status in TERMINAL_STATES:
                pending.remove(scan)
            elif answer.status == "not_found":
                since = not_found_since.setdefault(scan.scan_id, time.monotonic())
                if time.monotonic() - since >= lost_after_s:
                    notes.append((scan.scenario, f"scan {scan.scan_id} answered only "
                                  f"not_found for {lost_after_s:.1f} s; stopped following it"))
                    pending.remove(scan)
            else:
                not_found_since.pop(scan.scan_id, None)
        if not pending or time.monotonic() >= until:
            break
        time.sleep(poll_interval_s)
    return pending
