"""Invariants on the progress a scan shows: sane counts, never backwards, whole when complete."""

from __future__ import annotations

from harness.checker.context import CheckContext
from harness.checker.scans import (
    TERMINAL_STATES,
    Request,
    Scan,
    ScanState,
    as_count,
    build_violation,
    format_seconds,
    found_reads,
    join_problems,
)
from harness.checker.verdicts import Violation
from harness.history import Function

PROGRESS_SANE = "progress-sane"
MONOTONIC_READS = "monotonic-reads"
COMPLETE_IS_WHOLE = "complete-is-whole"

_KNOWN_STATUSES = frozenset(state.value for state in ScanState)


def judge_progress_sane(scan: Scan, context: CheckContext) -> list[Violation] | None:
    """Flag owner status responses whose progress is missing, out of range or off the promise.

    Every status 200 other than not_found must carry progress with
    0 <= strategies_completed <= total_strategies, and total_strategies must equal what
    the POST promised, from the first poll on.
    """
    violations: list[Violation] = []
    judged = 0
    for read in scan.owner_reads:
        if read.f is not Function.STATUS or read.is_info or read.http_status != 200:
            continue
        if read.value.get("status") == ScanState.NOT_FOUND:
            continue
        judged += 1
        problems = _progress_problems(read, scan.promised)
        if problems:
            promised = "" if scan.promised is None else f" ({scan.promised})"
            message = (
                f"{read.label()} returned {read.response_text()}. {join_problems(problems)} "
                "Every status response must carry progress with "
                "0 <= strategies_completed <= total_strategies, and total_strategies must "
                f"equal the count the POST promised{promised}."
            )
            involved = [read] if scan.post is None else [read, scan.post]
            violations.append(build_violation(PROGRESS_SANE, scan, involved, message))
    return violations if judged else None


def _progress_problems(read: Request, promised: int | None) -> list[str]:
    value = read.value
    problems = []
    status = value.get("status")
    if status not in _KNOWN_STATUSES:
        problems.append(f"its status {status!r} is not scanning, complete, failed or not_found")

    raw_completed = value.get("strategies_completed")
    raw_total = value.get("total_strategies")
    if raw_completed is None and raw_total is None:
        problems.append("it carries no progress")
        return problems
    completed = as_count(raw_completed)
    total = as_count(raw_total)
    if completed is None or total is None:
        problems.append(f"its progress {raw_completed!r}/{raw_total!r} is not two integers")
        return problems

    if completed < 0:
        problems.append(f"its strategies_completed is negative ({completed})")
    if completed > total:
        problems.append(
            f"its strategies_completed ({completed}) exceeds its total_strategies ({total})"
        )
    if promised is not None and total != promised:
        problems.append(f"its total_strategies is {total} but the POST promised {promised}")
    return problems


def judge_complete_is_whole(scan: Scan, context: CheckContext) -> list[Violation] | None:
    """Flag owner status responses that say complete while some strategies have not finished.

    Only responses that carry integer progress are judged. A complete response without
    progress is progress-sane's to flag.
    """
    violations: list[Violation] = []
    judged = 0
    for read in scan.owner_reads:
        if read.f is not Function.STATUS or read.state is not ScanState.COMPLETE:
            continue
        completed = read.completed
        total = as_count(read.value.get("total_strategies"))
        if completed is None or total is None:
            continue
        judged += 1
        if completed != total:
            message = (
                f"{read.label()} returned {read.response_text()}. A complete scan has "
                "finished every strategy, so strategies_completed must equal "
                "total_strategies."
            )
            violations.append(build_violation(COMPLETE_IS_WHOLE, scan, [read], message))
    return violations if judged else None


def judge_monotonic_reads(scan: Scan, context: CheckContext) -> list[Violation] | None:
    """Flag owner reads that show less than a read which completed before they were invoked.

    Less means fewer strategies completed, scanning after a terminal state, or a
    different terminal state. Reads that overlap in real time may see the scan in either
    order and are never compared. Reads that did not find the scan, 503s and info are
    left out. Each offending read yields one violation, paired with the earlier read
    that showed more.
    """
    reads = found_reads(scan)
    by_start = sorted(reads, key=lambda read: read.start_real_ns)
    by_end = sorted(reads, key=lambda read: read.end_real_ns)

    # Sweep the reads by invoke time. Before judging a read, absorb every read that
    # completed before it was invoked, keeping the one with the most progress and the
    # first of each terminal state. This costs two sorts, not a comparison of all pairs.
    max_progress_read: Request | None = None
    first_terminal: dict[ScanState, Request] = {}
    cursor = 0
    violations: list[Violation] = []
    judged = 0
    for later in by_start:
        while cursor < len(by_end) and by_end[cursor].end_real_ns < later.start_real_ns:
            earlier = by_end[cursor]
            cursor += 1
            if earlier.completed is not None and (
                max_progress_read is None
                or max_progress_read.completed is None
                or earlier.completed > max_progress_read.completed
            ):
                max_progress_read = earlier
            if earlier.state in TERMINAL_STATES and earlier.state not in first_terminal:
                first_terminal[earlier.state] = earlier
        if cursor == 0:
            continue

        judged += 1
        found = _regression(later, max_progress_read, first_terminal)
        if found is not None:
            earlier, rule = found
            gap = format_seconds(later.start_real_ns - earlier.end_real_ns)
            message = (
                f"{later.label()} returned {later.response_text()} after {earlier.label()} "
                f"had returned {earlier.response_text()}, and the second read was invoked {gap} "
                f"after the first completed. {rule}"
            )
            violations.append(build_violation(MONOTONIC_READS, scan, [earlier, later], message))
    return violations if judged else None


def _regression(
    later: Request,
    max_progress_read: Request | None,
    first_terminal: dict[ScanState, Request],
) -> tuple[Request, str] | None:
    """Return the earlier read that ``later`` goes back from, and the rule it breaks."""
    if (
        later.completed is not None
        and max_progress_read is not None
        and max_progress_read.completed is not None
        and later.completed < max_progress_read.completed
    ):
        return max_progress_read, (
            "A read must never show fewer strategies completed than a read that completed "
            "before it was invoked, whichever workers served them."
        )
    if later.state is ScanState.SCANNING and first_terminal:
        earlier = min(first_terminal.values(), key=lambda read: read.end_real_ns)
        rule = "A scan seen terminal stays terminal, so no later read may show it scanning."
        return earlier, rule
    for state, earlier in first_terminal.items():
        if later.state in TERMINAL_STATES and later.state is not state:
            return earlier, "A terminal state never changes into another."
    return None
