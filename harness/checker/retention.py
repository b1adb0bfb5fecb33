"""Invariants that rely on retention: a scan must be found while its data lives.

Both use the scan's T_lo bound. The scan was written at or after T_lo, so its data lives
at least until T_lo + retention, and a read that completes before then must find it.
"""

from __future__ import annotations

from harness.checker.context import CheckContext
from harness.checker.scans import (
    Bounds,
    Request,
    Scan,
    ScanState,
    build_violation,
    format_seconds,
    join_problems,
)
from harness.checker.verdicts import Violation
from harness.history import Function

KNOWN_SCAN_FOUND = "known-scan-found"
RESULTS_AFTER_COMPLETE = "results-after-complete"
EXPIRES = "expires"

# A read this long past T_hi + retention must not find the scan: the margin absorbs the
# time between the service's terminal write and the read that first saw it.
EXPIRY_MARGIN_NS = 1_000_000_000


def judge_known_scan_found(scan: Scan, context: CheckContext) -> list[Violation] | None:
    """Flag every owner read that missed the scan while it was within retention.

    A read invoked before the POST completed may miss the scan, because the service may
    not have written it yet. Reads that completed at or after T_lo + retention, and reads
    with no data (info, 5xx), are not judged.
    """
    post = _post_of(scan)
    bounds = scan.bounds()
    deadline_ns = bounds.t_lo_virtual_ns + context.retention_ns

    violations: list[Violation] = []
    judged = 0
    for read in scan.owner_reads:
        if read.state is None or read.end_virtual_ns is None or not post.precedes(read):
            continue
        if read.end_virtual_ns >= deadline_ns:
            continue
        judged += 1
        if read.state is ScanState.NOT_FOUND and not context.store_lost_data(
            bounds.t_lo_request, read
        ):
            message = (
                f"{read.label()} returned {read.response_text()}, "
                f"{format_seconds(read.end_virtual_ns - post.start_virtual_ns)} after the POST "
                f"that created the scan ({post.label()}). "
                f"{_retention_sentence(post, bounds, context)} Every worker must find it "
                "until then."
            )
            involved = [read, post]
            if bounds.t_lo_request is not post:
                involved.append(bounds.t_lo_request)
            violations.append(build_violation(KNOWN_SCAN_FOUND, scan, involved, message))
    return violations if judged else None


def judge_results_after_complete(scan: Scan, context: CheckContext) -> list[Violation] | None:
    """Flag owner results reads that, after a read saw the scan complete, miss any entry.

    A results read invoked after the first ``complete`` read completed, and completed
    before T_lo + retention, must return 200 with status complete and one distinct entry
    per strategy the POST promised. 503 and info carry no data and are skipped, and so
    are reads after a data-losing store action.
    """
    post = _post_of(scan)
    first_complete: Request | None = None
    for read in scan.owner_reads:
        if read.state is ScanState.COMPLETE and (
            first_complete is None or read.end_real_ns < first_complete.end_real_ns
        ):
            first_complete = read
    if first_complete is None:
        return None

    bounds = scan.bounds()
    deadline_ns = bounds.t_lo_virtual_ns + context.retention_ns
    violations: list[Violation] = []
    judged = 0
    for read in scan.owner_reads:
        if read.f is not Function.RESULTS or not first_complete.precedes(read):
            continue
        if read.is_info or read.http_status == 503 or read.end_virtual_ns is None:
            continue
        if read.end_virtual_ns >= deadline_ns:
            continue
        if context.store_lost_data(bounds.t_lo_request, read):
            continue
        judged += 1
        problems = _results_problems(read, scan.promised)
        if problems:
            promised = "every" if scan.promised is None else f"{scan.promised}"
            message = (
                f"{read.label()} returned {read.response_text()} after {first_complete.label()} "
                f"had returned complete. {join_problems(problems)} "
                f"{_retention_sentence(post, bounds, context)} Until then, results must "
                f"return 200 with one distinct entry for each of the {promised} promised "
                "strategies."
            )
            involved = [read, first_complete, post]
            violations.append(build_violation(RESULTS_AFTER_COMPLETE, scan, involved, message))
    return violations if judged else None


def _post_of(scan: Scan) -> Request:
    if scan.post is None:
        raise ValueError(f"scan {scan.scan_id!r} has no ok discover, so it has no owner")
    return scan.post


def _retention_sentence(post: Request, bounds: Bounds, context: CheckContext) -> str:
    """Say when the scan was last known written and how long it lives, in virtual time."""
    retention = format_seconds(context.retention_ns)
    lives_until = bounds.t_lo_virtual_ns + context.retention_ns - post.start_virtual_ns
    if bounds.t_lo_request is post:
        return (
            f"The scan was written at or after that POST and retention is {retention}, "
            f"so it lives until at least {format_seconds(lives_until)} after the POST."
        )
    superseded = bounds.t_lo_request
    written_at = format_seconds(superseded.start_virtual_ns - post.start_virtual_ns)
    return (
        f"A later read saw more progress or a later state than {superseded.label()}, so the "
        f"scan was written at or after that read was invoked, {written_at} after the POST. "
        f"Retention is {retention}, so the scan lives until at least "
        f"{format_seconds(lives_until)} after the POST."
    )


def _results_problems(read: Request, promised: int | None) -> list[str]:
    if read.http_status != 200:
        return [f"its status code is {read.http_status}, not 200"]

    value = read.value
    problems = []
    if value.get("status") != ScanState.COMPLETE:
        problems.append(f"its status is {value.get('status')!r}, not 'complete'")
    entries = value.get("strategy_ids")
    if not isinstance(entries, list):
        problems.append("it has no list of strategy_ids")
        return problems

    if promised is not None and len(entries) != promised:
        problems.append(f"it has {len(entries)} entries where the POST promised {promised}")
    if not all(isinstance(entry, str) for entry in entries):
        problems.append("some of its strategy_ids are not strings")
    elif len(set(entries)) != len(entries):
        duplicates = len(entries) - len(set(entries))
        noun = "duplicate" if duplicates == 1 else "duplicates"
        problems.append(f"its strategy_ids contain {duplicates} {noun}")
    return problems


def judge_expires(scan: Scan, context: CheckContext) -> list[Violation] | None:
    """Flag owner reads that found the scan after it must have expired, or after it was gone.

    Nothing is written to a scan after the first read that saw it terminal (T_hi), so its
    data is gone by T_hi + retention. A read invoked at or after T_hi + retention + 1 s
    that still finds it is a violation, and so is a read that finds it after an earlier
    read of the same endpoint, invoked after T_hi and completed before it started, found
    it gone. A scan never seen terminal has no T_hi and no verdict here.
    """
    bounds = scan.bounds()
    if bounds.t_hi_virtual_ns is None or bounds.t_hi_request is None:
        return None
    expired_at_ns = bounds.t_hi_virtual_ns + context.retention_ns + EXPIRY_MARGIN_NS
    terminal_read = bounds.t_hi_request

    violations: list[Violation] = []
    judged = 0
    gone: dict[Function, Request] = {}
    for read in sorted(scan.owner_reads, key=lambda request: request.start_real_ns):
        if read.state is None or not terminal_read.precedes(read):
            continue
        found = read.state is not ScanState.NOT_FOUND
        if read.start_virtual_ns >= expired_at_ns:
            judged += 1
            if found:
                message = (
                    f"{read.label()} returned {read.response_text()}, "
                    f"{format_seconds(read.start_virtual_ns - bounds.t_hi_virtual_ns)} of "
                    f"virtual time after {terminal_read.label()} first saw the scan "
                    f"{terminal_read.state}. Nothing is written to a finished scan, so its "
                    f"keys must be gone {format_seconds(context.retention_ns)} (the "
                    "retention) after that; a write without a TTL keeps it forever."
                )
                violations.append(build_violation(EXPIRES, scan, [read, terminal_read], message))
                continue
        earlier_gone = gone.get(read.f)
        if found and earlier_gone is not None and earlier_gone.precedes(read):
            judged += 1
            message = (
                f"{read.label()} found the scan ({read.response_text()}) after "
                f"{earlier_gone.label()} had returned {earlier_gone.response_text()} for it; "
                "a finished scan that is gone must stay gone."
            )
            violations.append(build_violation(EXPIRES, scan, [read, earlier_gone], message))
        elif not found and earlier_gone is None:
            gone[read.f] = read
    return violations if judged else None
