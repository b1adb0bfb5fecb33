"""The honest-errors invariant: while the store or a worker fails, reads stay truthful.

During a nemesis window (a killed worker, a store outage, error replies), and for the
retry budget after it, a service may be unable to read a scan. The honest response is
then 503 with Retry-After, which tells the client to retry. ``not_found`` or 404 tells it
the scan is gone, and a client that believes it stops polling a scan that is alive.
"""

from __future__ import annotations

from harness.checker.context import CheckContext
from harness.checker.scans import Scan, ScanState, build_violation, format_seconds
from harness.checker.verdicts import Violation
from harness.history import NemesisWindow

HONEST_ERRORS = "honest-errors"

_FOUND_STATES = frozenset({ScanState.SCANNING, ScanState.COMPLETE, ScanState.FAILED})


def judge_honest_errors(scan: Scan, context: CheckContext) -> list[Violation] | None:
    """Flag owner reads inside a nemesis window that returned neither the scan nor 503.

    Judged: owner reads that overlap a window or its retry budget, were invoked after the
    POST completed, and completed while the scan was within retention (before
    T_lo + retention). Reads without a response (info) carry no data, and reads after a
    data-losing store action are excused. A scan with no such read is unknown.
    """
    post = scan.post
    if post is None or not context.windows:
        return None
    bounds = scan.bounds()
    retained_until_ns = bounds.t_lo_virtual_ns + context.retention_ns

    violations: list[Violation] = []
    judged = 0
    for read in scan.owner_reads:
        end_ns = read.end_virtual_ns
        if read.is_info or end_ns is None or end_ns >= retained_until_ns:
            continue
        if not post.precedes(read):
            continue
        windows = context.windows_around(read)
        if not windows or context.store_lost_data(bounds.t_lo_request, read):
            continue
        judged += 1
        if read.http_status == 503 or read.state in _FOUND_STATES:
            continue
        message = (
            f"{read.label()} returned {read.response_text()} during {describe_windows(windows)}, "
            f"{format_seconds(end_ns - post.start_virtual_ns)} after the POST that created "
            f"the scan ({post.label()}), while the scan was within retention. While the "
            "store or a worker fails, a read must return the scan or 503 with Retry-After; "
            "not_found, 404 or a 500 tells the client something false."
        )
        violations.append(build_violation(HONEST_ERRORS, scan, [read, post], message))
    return violations if judged else None


def describe_windows(windows: list[NemesisWindow]) -> str:
    """Name windows for a message, e.g. ``nemesis window 12 (store-errors on store)``."""
    named = [f"nemesis window {window.index} ({window.action} on {window.target}, "
             f"{window.real_start_ns / 1e9:.3f} s to {window.real_end_ns / 1e9:.3f} s)"
             for window in windows]
    return ", ".join(named)
