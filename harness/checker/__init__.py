"""Checker: judge a history against the invariants of a correct scan service.

The checker reads only the history. It pairs each invoke op with its completion into a
*request*, splits the requests by scan id, and judges each scan with each invariant. A
scan's *POST* is the ``ok`` discover that returned its id. The POST's user is the scan's
*owner*, and its ``total_strategies`` is the *promised* count. Reads by other users are
judged only by owner-isolation. Reads of ids that no ``ok`` discover returned are judged
only by no-server-errors.

Two requests are ordered when one completed before the other was invoked, by the
harness's monotonic clock (``real_ns``). Otherwise they overlap, and either may have seen
the scan first. A request that never completed overlaps every op after its invoke.

The service refreshes a scan's retention TTL on every write, and the history does not
record when it wrote. Two bounds per scan, in virtual time (``virtual_ns``), stand in:

- **T_lo** is the latest of the POST's invoke and the invoke of every *superseded* read.
  A read is superseded when a later read that does not overlap it shows more progress,
  or a terminal state where it saw scanning. The scan was written at or after T_lo, so
  its data lives at least until T_lo + ``retention_s``. known-scan-found and
  results-after-complete judge the reads that completed before then.
- **T_hi** is the completion of the first read that saw the scan complete or failed.
  Nothing is written after the terminal write, so the data is gone by
  T_hi + ``retention_s``. The expires invariant uses it.

Verdicts are three-valued. Each invariant judges each scan in its scope: ``fail`` with
a violation, ``pass`` with data and no violation, and ``unknown`` with no data (for
example, results-after-complete on a scan that no results read followed after
complete). An invariant fails if any scan failed, else passes if any scan passed, else
is unknown. An invariant that raises is unknown with ``error`` set, never pass. The
check folds the invariants' verdicts the same way.

Example::

    from harness.checker import check
    from harness.history import read_history

    result = check(read_history(path), ["known-scan-found", "monotonic-reads"])
    print(result.verdict)  # fail
    for violation in result.violations:
        print(violation.message)
    # status at op 41 on worker 2 returned not_found, 0.8 s after the POST that created
    # the scan (discover at op 12 on worker 0). The scan was written at or after ...
"""

from harness.checker.judge import check, select_invariants
from harness.checker.registry import INVARIANTS, Invariant, Judge, Scope
from harness.checker.verdicts import CheckResult, InvariantResult, Verdict, Violation

__all__ = [
    "INVARIANTS",
    "CheckResult",
    "Invariant",
    "InvariantResult",
    "Judge",
    "Scope",
    "Verdict",
    "Violation",
    "check",
    "select_invariants",
]
