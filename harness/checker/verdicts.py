"""Verdicts, violations and the results that ``check`` returns.

A verdict is three-valued: ``pass`` when an invariant had data and found no violation,
``fail`` when it found at least one, and ``unknown`` when it had no data or crashed. A
crash never passes.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import StrEnum


class Verdict(StrEnum):
    """The judgement of one invariant on one scan, of one invariant, or of a whole check."""

    PASS = "pass"  # there was data and no violation
    FAIL = "fail"  # at least one violation
    UNKNOWN = "unknown"  # no data to judge, or the invariant crashed


def combine_verdicts(verdicts: Iterable[Verdict]) -> Verdict:
    """Fold verdicts into one: fail if any failed, else pass if any passed, else unknown."""
    seen = set(verdicts)
    if Verdict.FAIL in seen:
        return Verdict.FAIL
    if Verdict.PASS in seen:
        return Verdict.PASS
    return Verdict.UNKNOWN


@dataclass(frozen=True, slots=True)
class Violation:
    """One breach of one invariant, with what a person needs to find and replay it.

    The tuples ``op_indices``, ``real_s`` and ``virtual_s`` run in parallel, one entry per
    request involved, in the order the message names them.
    """

    invariant: str
    """Name of the invariant that was broken, a key of ``INVARIANTS``."""

    scan_id: str | None
    """The scan the ops concern, or None for ops that name no scan (a failed POST)."""

    op_indices: tuple[int, ...]
    """History index of the op that records the outcome of each request involved: the
    completion, or the invoke when the request never completed."""

    workers: tuple[int, ...]
    """Indices of the workers that served those ops, each once, in order of first mention.
    Ops whose worker is unknown add nothing."""

    real_s: tuple[float, ...]
    """Harness monotonic time of each op in ``op_indices``, in seconds since the history began."""

    virtual_s: tuple[float, ...]
    """Virtual time of each op in ``op_indices``, in seconds since the epoch."""

    message: str
    """Sentences a person can act on: what happened and which rule it breaks."""

    nemesis_windows: tuple[int, ...] = ()
    """History indices of the nemesis windows that the first op's request overlapped,
    retry budget included. The message names them too."""

    def to_json(self) -> dict[str, object]:
        return {
            "invariant": self.invariant,
            "scan_id": self.scan_id,
            "op_indices": list(self.op_indices),
            "workers": list(self.workers),
            "real_s": list(self.real_s),
            "virtual_s": list(self.virtual_s),
            "message": self.message,
            "nemesis_windows": list(self.nemesis_windows),
        }


@dataclass(slots=True)
class InvariantResult:
    """Judgement of one invariant over the scans in its scope."""

    name: str
    """Name of the invariant, a key of ``INVARIANTS``."""

    verdict: Verdict
    """``fail`` if any scan failed; otherwise ``pass`` if any scan passed and nothing
    crashed; otherwise ``unknown``."""

    scans_passed: int = 0
    """Scans where the invariant had data and found no violation."""

    scans_failed: int = 0
    """Scans with at least one violation of this invariant."""

    scans_unknown: int = 0
    """Scans with no data for this invariant, or on which it crashed."""

    error: str | None = None
    """The exception the invariant raised, with the scan it raised on, or None. An
    invariant that raised is never ``pass``."""

    def to_json(self) -> dict[str, object]:
        return {
            "name": self.name,
            "verdict": str(self.verdict),
            "scans_passed": self.scans_passed,
            "scans_failed": self.scans_failed,
            "scans_unknown": self.scans_unknown,
            "error": self.error,
        }


@dataclass(slots=True)
class CheckResult:
    """The checker's judgement of a history."""

    verdict: Verdict
    """``fail`` if any invariant failed, else ``pass`` if any passed, else ``unknown``."""

    invariants: dict[str, InvariantResult] = field(default_factory=dict)
    """Result of each invariant that was checked, by name, in the order they ran."""

    violations: list[Violation] = field(default_factory=list)
    """Every violation found, grouped by invariant, then by scan in history order."""

    scans: int = 0
    """Number of scans accepted in the history, that is, scan ids returned by an ``ok``
    discover."""

    def to_json(self) -> dict[str, object]:
        return {
            "verdict": str(self.verdict),
            "scans": self.scans,
            "invariants": {name: result.to_json() for name, result in self.invariants.items()},
            "violations": [violation.to_json() for violation in self.violations],
        }
