"""Invariants on who receives a scan and with which status codes: owner isolation and no
server errors.
"""

from __future__ import annotations

from harness.checker.context import CheckContext
from harness.checker.scans import Scan, ScanState, build_violation
from harness.checker.verdicts import Violation
from harness.history import Function

OWNER_ISOLATION = "owner-isolation"
NO_SERVER_ERRORS = "no-server-errors"


def judge_owner_isolation(scan: Scan, context: CheckContext) -> list[Violation] | None:
    """Flag every read by a user other than the owner that received the scan.

    Such a read must get not_found from status, or 404 from results. A status code other
    than 200 from status also reveals nothing. Info outcomes and 5xx responses carry no data and
    are not judged, because no-server-errors flags a 5xx.
    """
    if scan.post is None:
        return None
    violations: list[Violation] = []
    judged = 0
    for read in scan.other_reads:
        code = read.http_status
        if read.is_info or code is None or code >= 500:
            continue
        judged += 1
        if read.f is Function.STATUS:
            leaked = code == 200 and read.value.get("status") != ScanState.NOT_FOUND
        else:
            leaked = code != 404
        if leaked:
            message = (
                f"{read.label()} returned {read.response_text()} to user {read.user!r}, but "
                f"the scan belongs to user {scan.post.user!r} ({scan.post.label()}). Any "
                "other user must get not_found from status and 404 from results."
            )
            violations.append(build_violation(OWNER_ISOLATION, scan, [read, scan.post], message))
    return violations if judged else None


def judge_no_server_errors(scan: Scan, context: CheckContext) -> list[Violation] | None:
    """Flag every response with a 5xx status code, except a 503 inside a nemesis window.

    Inside a window, or within the retry budget after it, a 503 is the honest response
    to a store that cannot be read, and honest-errors judges the reads there. Any other
    5xx is a violation everywhere. Applies to every request, including POSTs and reads
    of scans no discover returned. Requests without a response are not judged.
    """
    violations: list[Violation] = []
    judged = 0
    for request in scan.requests:
        code = request.http_status
        if code is None or (code == 503 and context.in_nemesis_window(request)):
            continue
        judged += 1
        if 500 <= code <= 599:
            error = request.outcome_op.error
            detail = f" ({error})" if error else ""
            if code == 503:
                rule = ("Outside a nemesis window the store works, so no request may get "
                        "a 5xx response.")
            else:
                rule = ("No request may get a 5xx response other than a 503 inside a "
                        "nemesis window.")
            message = (
                f"{request.label()} returned HTTP {code}{detail}. {rule} Check that "
                "worker's service log for the cause."
            )
            violations.append(build_violation(NO_SERVER_ERRORS, scan, [request], message))
    return violations if judged else None
