"""Run the selected invariants over every scan of a history and fold their verdicts."""

from __future__ import annotations

import dataclasses
import gc
import logging
from collections.abc import Iterable, Iterator
from contextlib import contextmanager

from harness.checker.context import CheckContext
from harness.checker.outages import describe_windows
from harness.checker.registry import INVARIANTS, Invariant, Scope
from harness.checker.scans import Scan, split_by_scan
from harness.checker.verdicts import (
    CheckResult,
    InvariantResult,
    Verdict,
    Violation,
    combine_verdicts,
)
from harness.history import History

logger = logging.getLogger(__name__)


def check(history: History, invariants: Iterable[str] | None = None) -> CheckResult:
    """Judge ``history`` against the named invariants, or against all of them.

    ``invariants`` contains names from ``INVARIANTS``. A single string counts as one name.
    Names that repeat run once. ``history`` may contain only some ops of a run, such as
    one scenario's.

    Raises ValueError naming every unknown invariant and listing the known ones.
    """
    selected = select_invariants(invariants)
    context = CheckContext.from_history(history)
    results: dict[str, InvariantResult] = {}
    violations: list[Violation] = []
    with _cyclic_gc_paused():
        scans = split_by_scan(history)
        accepted = [scan for scan in scans.values() if scan.post is not None]
        every_scan = list(scans.values())
        for invariant in selected:
            targets = accepted if invariant.scope is Scope.ACCEPTED else every_scan
            result, found = _judge_invariant(invariant, targets, context)
            results[invariant.name] = result
            violations.extend(found)

    verdict = combine_verdicts(result.verdict for result in results.values())
    return CheckResult(
        verdict=verdict, invariants=results, violations=violations, scans=len(accepted)
    )


def select_invariants(names: Iterable[str] | None) -> list[Invariant]:
    """Look up invariants by name, all of them for None, raising ValueError for unknown names."""
    if names is None:
        return list(INVARIANTS.values())
    if isinstance(names, str):
        names = [names]

    requested = list(dict.fromkeys(names))
    unknown = [name for name in requested if name not in INVARIANTS]
    if unknown:
        noun = "invariant" if len(unknown) == 1 else "invariants"
        bad = ", ".join(repr(name) for name in unknown)
        raise ValueError(f"unknown {noun} {bad}. Known invariants: {', '.join(INVARIANTS)}.")
    return [INVARIANTS[name] for name in requested]


def _judge_invariant(
    invariant: Invariant, scans: list[Scan], context: CheckContext
) -> tuple[InvariantResult, list[Violation]]:
    """Judge every scan, turning an exception on one scan into an unknown for that scan."""
    result = InvariantResult(name=invariant.name, verdict=Verdict.UNKNOWN)
    violations: list[Violation] = []
    errors: list[str] = []
    for scan in scans:
        try:
            found = invariant.judge(scan, context)
        except Exception as error:  # a checker bug must yield unknown, not a crash
            logger.exception("invariant %s raised on scan %s", invariant.name, scan.scan_id)
            errors.append(f"{type(error).__name__}: {error} (scan {scan.scan_id})")
            result.scans_unknown += 1
            continue

        if found is None:
            result.scans_unknown += 1
        elif found:
            result.scans_failed += 1
            violations.extend(_with_windows(violation, scan, context) for violation in found)
        else:
            result.scans_passed += 1

    if result.scans_failed:
        result.verdict = Verdict.FAIL
    elif result.scans_passed and not errors:
        result.verdict = Verdict.PASS
    if errors:
        more = f", and {len(errors) - 1} more scans raised" if len(errors) > 1 else ""
        result.error = errors[0] + more
    return result, violations


def _with_windows(violation: Violation, scan: Scan, context: CheckContext) -> Violation:
    """Add the nemesis windows that the violation's first request overlapped, if any."""
    if not context.windows or not violation.op_indices:
        return violation
    first_op = violation.op_indices[0]
    request = next((request for request in scan.requests
                    if request.outcome_op.index == first_op), None)
    if request is None:
        return violation
    windows = context.windows_around(request)
    if not windows:
        return violation
    message = violation.message
    unnamed = [window for window in windows if f"nemesis window {window.index} " not in message]
    if unnamed:
        message += f" It ran during {describe_windows(unnamed)}."
    return dataclasses.replace(violation, message=message,
                               nemesis_windows=tuple(window.index for window in windows))


@contextmanager
def _cyclic_gc_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector, and resume it only if it was running.

    Splitting a history allocates one object per request, and these allocations keep
    triggering collections that rescan every live op. Pausing the collector made the
    split of one million ops about four times faster (CPython 3.11 on 2 cores, with the
    synthetic history of test_checker_scale.py). The checker's objects form no
    reference cycles, so no garbage waits for the collector meanwhile.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()
