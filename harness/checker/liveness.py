"""The terminates invariant: every accepted scan ends, complete or failed, by its deadline.

A worker that dies while a scan runs in it cannot finish the scan, so the service must
notice (here, by a heartbeat older than the staleness bound) and report the scan failed.
A scan that stays ``scanning`` forever is the symptom. The harness keeps polling open
scans until they end or their deadline (``deadline_s`` of virtual time after the POST)
has passed, and moves virtual time forward when it must. So every scan that did not end
has a read after its deadline.
"""

from __future__ import annotations

from harness.checker.context import CheckContext
from harness.checker.scans import (
    TERMINAL_STATES,
    Scan,
    ScanState,
    build_violation,
    format_seconds,
)
from harness.checker.verdicts import Violation

TERMINATES = "terminates"


def judge_terminates(scan: Scan, context: CheckContext) -> list[Violation] | None:
    """Flag a scan that an owner read invoked after its deadline still saw scanning.

    The deadline is ``deadline_s`` of virtual time after the POST was invoked. A read that
    saw the scan complete or failed and completed by the deadline passes it. A scan with
    neither (never read after the deadline, or only found missing) is unknown, and so is a
    scan that a data-losing store action may have erased, because its runner then has no
    record to finish.
    """
    post = scan.post
    if post is None:
        return None
    deadline_ns = post.start_virtual_ns + context.deadline_ns

    late_scanning = None
    for read in scan.owner_reads:
        end_ns = read.end_virtual_ns
        if read.state in TERMINAL_STATES and end_ns is not None and end_ns <= deadline_ns:
            return []
        if (read.state is ScanState.SCANNING and read.start_virtual_ns >= deadline_ns
                and late_scanning is None):
            late_scanning = read
    if late_scanning is None or context.store_lost_data(post, late_scanning):
        return None

    message = (
        f"{late_scanning.label()} returned {late_scanning.response_text()}, "
        f"{format_seconds(late_scanning.start_virtual_ns - post.start_virtual_ns)} of "
        f"virtual time after the POST that created the scan ({post.label()}). Every "
        f"accepted scan must be complete or failed within {format_seconds(context.deadline_ns)}"
        " (deadline_s). A scan whose worker died must be reported failed once its "
        "heartbeat is older than stale_s, not left scanning."
    )
    return [build_violation(TERMINATES, scan, [late_scanning, post], message)]
