"""Registry of the invariants by name, each with a one-line description."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

from harness.checker import access, liveness, outages, progress, retention
from harness.checker.context import CheckContext
from harness.checker.scans import Scan
from harness.checker.verdicts import Violation

Judge = Callable[[Scan, CheckContext], list[Violation] | None]
"""Judge one scan: return its violations, an empty list if it passed, or None if the
scan held no data for the invariant (an unknown verdict)."""


class Scope(StrEnum):
    """Set of scans that an invariant judges."""

    ACCEPTED = "accepted"  # scans whose id an ok discover returned
    ALL = "all"  # also reads of unknown scan ids, and requests with no scan id (scan None)


@dataclass(frozen=True, slots=True)
class Invariant:
    """A named rule that the checker judges on every scan in its scope."""

    name: str
    description: str
    """One line for ``scan-harness scenarios`` and reports."""

    judge: Judge
    scope: Scope = Scope.ACCEPTED


INVARIANTS: dict[str, Invariant] = {
    invariant.name: invariant
    for invariant in (
        Invariant(
            retention.KNOWN_SCAN_FOUND,
            "the owner's reads find the scan while it is within retention",
            retention.judge_known_scan_found,
        ),
        Invariant(
            retention.RESULTS_AFTER_COMPLETE,
            "after a read saw complete, results return one entry per promised strategy",
            retention.judge_results_after_complete,
        ),
        Invariant(
            retention.EXPIRES,
            "a finished scan is gone 1 s after retention past the first read that saw it "
            "finished, and stays gone",
            retention.judge_expires,
        ),
        Invariant(
            progress.PROGRESS_SANE,
            "every status carries progress, 0 <= completed <= total, total as promised",
            progress.judge_progress_sane,
        ),
        Invariant(
            progress.MONOTONIC_READS,
            "a read never shows less progress or an earlier state than one before it",
            progress.judge_monotonic_reads,
        ),
        Invariant(
            progress.COMPLETE_IS_WHOLE,
            "a complete status has strategies_completed equal to total_strategies",
            progress.judge_complete_is_whole,
        ),
        Invariant(
            access.OWNER_ISOLATION,
            "a user other than the owner gets not_found or 404 for the scan",
            access.judge_owner_isolation,
        ),
        Invariant(
            liveness.TERMINATES,
            "every accepted scan is seen complete or failed within deadline_s of virtual time",
            liveness.judge_terminates,
        ),
        Invariant(
            outages.HONEST_ERRORS,
            "during a nemesis window, the owner's reads return the scan or 503",
            outages.judge_honest_errors,
        ),
        Invariant(
            access.NO_SERVER_ERRORS,
            "no request gets a 5xx response outside a nemesis window",
            access.judge_no_server_errors,
            Scope.ALL,
        ),
    )
}
"""Every invariant the checker judges, by name."""
