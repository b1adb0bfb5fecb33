"""Requests and scans: the shape in which the invariants read a history.

A *request* is an invoke op paired with its completion. A request whose completion is
missing (the run was cut) counts as ``info``: its outcome is unknown and it never ended,
so it overlaps every op after its invoke. Each request also records what its response
showed about the scan, its *state*, or None when the response carries no data.

A *scan* groups every request that names one scan id. Its *POST* is the ``ok`` discover
that returned the id, and the POST's user is the scan's *owner*. Reads of scan ids that
no ``ok`` discover returned form scans without a POST, which only no-server-errors judges.
Requests that name no scan id (a failed or unknown POST) form the scan with id None.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from harness.checker.verdicts import Violation
from harness.history import Function, History, Op, OpType

NEVER_NS = 2**63 - 1
"""End time, in real ns, of a request that never completed: later than every op."""


class ScanState(StrEnum):
    """The state of a scan as one read showed it."""

    SCANNING = "scanning"  # status scanning, or results 202
    COMPLETE = "complete"  # status complete, or results 200 with status complete
    FAILED = "failed"  # status failed, or results 200 with status failed
    NOT_FOUND = "not_found"  # status not_found, or results 404


TERMINAL_STATES = frozenset({ScanState.COMPLETE, ScanState.FAILED})
_STATUS_STATES = {state.value: state for state in ScanState}
_RESULTS_STATES = {"complete": ScanState.COMPLETE, "failed": ScanState.FAILED}
_NO_VALUE: dict[str, Any] = {}
# Looking a member up on its Enum class costs about 50 ns in CPython 3.11 (timeit), and
# pairing does it for every request.
_OK = OpType.OK
_INFO = OpType.INFO


@dataclass(slots=True, eq=False)
class Request:
    """One request: its invoke op, its completion op, and what the response showed.

    The fields after ``completion`` are derived once from the two ops, because every
    invariant reads them.
    """

    invoke: Op
    completion: Op | None
    """The ok, fail or info op that ended the request, or None if it never completed."""

    f: Function
    user: str
    """The user whose token the request carried."""

    scan_id: str | None
    """The scan the request concerns: the id read, or the id a discover returned."""

    start_real_ns: int
    end_real_ns: int
    """Real time of the completion, or ``NEVER_NS`` if the request never completed."""

    is_info: bool
    """Whether the outcome is unknown: an ``info`` completion, or none at all."""

    http_status: int | None
    value: dict[str, Any]
    """The completion's value, or an empty dict when there is none. Read only."""

    state: ScanState | None = None
    """The scan state the response showed, or None when it carries no data: an
    ``info`` outcome, a 5xx, or a status code or value the service contract does not define."""

    completed: int | None = None
    """``strategies_completed`` when the response carries it as an integer, else None."""

    @property
    def start_virtual_ns(self) -> int:
        return self.invoke.virtual_ns

    @property
    def end_virtual_ns(self) -> int | None:
        return None if self.completion is None else self.completion.virtual_ns

    @property
    def outcome_op(self) -> Op:
        """The op that carries the outcome: the completion, or the invoke if none."""
        return self.invoke if self.completion is None else self.completion

    @property
    def worker(self) -> int | None:
        """The worker that served the request, as the completion records it if it does."""
        if self.completion is not None and self.completion.worker is not None:
            return self.completion.worker
        return self.invoke.worker

    def precedes(self, other: Request) -> bool:
        """Return whether this request completed before ``other`` was invoked, in real time."""
        return self.end_real_ns < other.start_real_ns

    def label(self) -> str:
        """Name the request for a message, e.g. ``status at op 41 on worker 2``."""
        where = f"{self.f.value} at op {self.outcome_op.index}"
        if self.worker is None:
            return f"{where} (worker unknown)"
        return f"{where} on worker {self.worker}"

    def response_text(self) -> str:
        """Describe the response for a message, e.g. ``scanning 5/14`` or ``HTTP 404``."""
        if self.is_info:
            return "no response (info)"
        value = self.value
        if self.f is Function.STATUS and self.http_status == 200:
            status = value.get("status")
            if status == ScanState.NOT_FOUND:
                return "not_found"
            return f"{status} {_progress_text(value)}"
        if self.f is Function.RESULTS and self.http_status == 200:
            entries = value.get("strategy_ids")
            count = len(entries) if isinstance(entries, list) else "no"
            return f"HTTP 200 {value.get('status')} with {count} entries"
        if self.f is Function.RESULTS and self.http_status == 202:
            if "strategies_completed" in value:
                return f"HTTP 202 scanning {_progress_text(value)}"
            return "HTTP 202 scanning"
        return f"HTTP {self.http_status}"


def _progress_text(value: dict[str, Any]) -> str:
    completed = value.get("strategies_completed")
    total = value.get("total_strategies")
    if completed is None and total is None:
        return "without progress"
    return f"{completed}/{total}"


def as_count(value: object) -> int | None:
    """Return ``value`` if it is an integer count (bools excluded), else None."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    return None


def _observe(f: Function, http_status: int | None, value: dict[str, Any]) -> ScanState | None:
    if f is Function.STATUS:
        if http_status == 200:
            return _STATUS_STATES.get(value.get("status"))  # type: ignore[arg-type]
        return None
    if f is Function.RESULTS:
        if http_status == 200:
            return _RESULTS_STATES.get(value.get("status"))  # type: ignore[arg-type]
        if http_status == 202:
            return ScanState.SCANNING
        if http_status == 404:
            return ScanState.NOT_FOUND
    return None


def pair_request(invoke: Op, completion: Op | None) -> Request:
    """Build the request of one invoke and its completion, and derive what it showed."""
    value = _NO_VALUE
    if completion is not None and isinstance(completion.value, dict):
        value = completion.value

    scan_id = invoke.scan_id
    if scan_id is None and completion is not None:
        scan_id = completion.scan_id
        if scan_id is None and invoke.f is Function.DISCOVER and completion.type is _OK:
            returned = value.get("scan_id")
            scan_id = returned if isinstance(returned, str) else None

    is_info = completion is None or completion.type is _INFO
    http_status = None if completion is None else completion.http_status
    request = Request(
        invoke=invoke,
        completion=completion,
        f=invoke.f,
        user=invoke.user,
        scan_id=scan_id,
        start_real_ns=invoke.real_ns,
        end_real_ns=NEVER_NS if completion is None else completion.real_ns,
        is_info=is_info,
        http_status=http_status,
        value=value,
    )
    if not is_info:
        request.state = _observe(invoke.f, http_status, value)
        if request.state is not None and request.state is not ScanState.NOT_FOUND:
            request.completed = as_count(value.get("strategies_completed"))
    return request


@dataclass(frozen=True, slots=True)
class Bounds:
    """The two virtual-time bounds of a scan's retention, derived from its owner's reads."""

    t_lo_virtual_ns: int
    """T_lo: the scan was written at or after this time, so it lives until at least
    T_lo + retention."""

    t_lo_request: Request
    """The request T_lo comes from: the POST, or the latest superseded read."""

    t_hi_virtual_ns: int | None
    """T_hi: completion time of the first read that saw the scan terminal, or None if no
    read did. Nothing is written after it, so the scan is gone by T_hi + retention."""

    t_hi_request: Request | None
    """The read T_hi comes from, or None."""


@dataclass(slots=True, eq=False)
class Scan:
    """Every request that names one scan id, in history order, with the reads split by user."""

    scan_id: str | None
    requests: list[Request] = field(default_factory=list)
    post: Request | None = None
    """The ``ok`` discover that returned this scan id, or None if no such op is in the history."""

    owner_reads: list[Request] = field(default_factory=list)
    """Status and results requests by the owner, in history order. Empty without a POST."""

    other_reads: list[Request] = field(default_factory=list)
    """Status and results requests by any other user, in history order. Empty without a POST."""

    bounds_cache: Bounds | None = None

    @property
    def owner(self) -> str | None:
        return None if self.post is None else self.post.user

    @property
    def promised(self) -> int | None:
        """The ``total_strategies`` the POST returned, or None if it returned no integer."""
        if self.post is None:
            return None
        return as_count(self.post.value.get("total_strategies"))

    def bounds(self) -> Bounds:
        """Return T_lo and T_hi, computed on first use from the owner's reads.

        Raises ValueError for a scan without a POST, which has no bounds.
        """
        if self.bounds_cache is None:
            self.bounds_cache = _compute_bounds(self)
        return self.bounds_cache


def split_by_scan(history: History) -> dict[str | None, Scan]:
    """Pair each invoke with its completion and group the requests by scan id.

    Ops are matched by ``index`` and ``invoke_index``, never by position, because a
    history may hold only some ops of a run. A completion whose invoke is not in the
    history is dropped. The scans come in the order their ids first appear.
    """
    completions: dict[int, Op] = {}
    for op in history.ops:
        if op.type is not OpType.INVOKE and op.invoke_index is not None:
            completions[op.invoke_index] = op

    scans: dict[str | None, Scan] = {}
    for op in history.ops:
        if op.type is not OpType.INVOKE:
            continue
        request = pair_request(op, completions.get(op.index))
        scan = scans.get(request.scan_id)
        if scan is None:
            scan = scans[request.scan_id] = Scan(request.scan_id)
        scan.requests.append(request)
        if (
            scan.post is None
            and request.scan_id is not None
            and request.f is Function.DISCOVER
            and request.completion is not None
            and request.completion.type is OpType.OK
        ):
            scan.post = request

    for scan in scans.values():
        if scan.post is not None:
            _split_reads(scan, scan.post.user)
    return scans


def _split_reads(scan: Scan, owner: str) -> None:
    for request in scan.requests:
        if request.f is Function.DISCOVER:
            continue
        if request.user == owner:
            scan.owner_reads.append(request)
        else:
            scan.other_reads.append(request)


def found_reads(scan: Scan) -> list[Request]:
    """Return the owner's reads that found the scan: scanning, complete or failed."""
    return [
        read
        for read in scan.owner_reads
        if read.state is not None and read.state is not ScanState.NOT_FOUND
    ]


def _compute_bounds(scan: Scan) -> Bounds:
    if scan.post is None:
        raise ValueError(f"scan {scan.scan_id!r} has no ok discover in the history, so no bounds")

    # A read is superseded when a later read that does not overlap it shows more. The
    # sweep visits reads by completion time, latest first, and keeps the maximum that
    # reads invoked after that completion showed, so it costs one sort.
    reads = found_reads(scan)
    by_end = sorted(reads, key=lambda read: read.end_real_ns, reverse=True)
    by_start = sorted(reads, key=lambda read: read.start_real_ns, reverse=True)
    later_max_completed: int | None = None
    later_terminal = False
    cursor = 0

    t_lo_request = scan.post
    for read in by_end:
        while cursor < len(by_start) and by_start[cursor].start_real_ns > read.end_real_ns:
            later = by_start[cursor]
            cursor += 1
            if later.completed is not None and (
                later_max_completed is None or later.completed > later_max_completed
            ):
                later_max_completed = later.completed
            later_terminal = later_terminal or later.state in TERMINAL_STATES

        more_progress = (
            read.completed is not None
            and later_max_completed is not None
            and later_max_completed > read.completed
        )
        later_state = read.state is ScanState.SCANNING and later_terminal
        if (more_progress or later_state) and read.start_virtual_ns > t_lo_request.start_virtual_ns:
            t_lo_request = read

    t_hi_request: Request | None = None
    for read in reads:
        if read.state in TERMINAL_STATES and (
            t_hi_request is None or read.end_real_ns < t_hi_request.end_real_ns
        ):
            t_hi_request = read

    return Bounds(
        t_lo_virtual_ns=t_lo_request.start_virtual_ns,
        t_lo_request=t_lo_request,
        t_hi_virtual_ns=None if t_hi_request is None else t_hi_request.end_virtual_ns,
        t_hi_request=t_hi_request,
    )


def build_violation(invariant: str, scan: Scan, requests: list[Request], message: str) -> Violation:
    """Build a violation of ``invariant`` naming the outcome op of each request, in order."""
    ops = [request.outcome_op for request in requests]
    workers: list[int] = []
    for request in requests:
        worker = request.worker
        if worker is not None and worker not in workers:
            workers.append(worker)
    return Violation(
        invariant=invariant,
        scan_id=scan.scan_id,
        op_indices=tuple(op.index for op in ops),
        workers=tuple(workers),
        real_s=tuple(op.real_ns / 1e9 for op in ops),
        virtual_s=tuple(op.virtual_ns / 1e9 for op in ops),
        message=message,
    )


def format_seconds(duration_ns: int) -> str:
    """Format a duration for a message: ``0.8 s``, ``12.3 s``, ``600 s``."""
    seconds = duration_ns / 1e9
    if abs(seconds) >= 100:
        return f"{seconds:.0f} s"
    return f"{seconds:.3g} s"


def join_problems(problems: list[str]) -> str:
    """Join clauses such as ``the status is 'failed'`` into one sentence."""
    text = ", and ".join(problems)
    return text[0].upper() + text[1:] + "."
