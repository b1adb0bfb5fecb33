"""Faults: named switches that each revert one part of the correct design to a real bug.

A fault is enabled per worker through the environment (``SCAN_SERVICE_FAULTS``, a
comma-separated list of names). ``KNOWN`` is the registry, in catalogue order, and each
entry states the mechanism and the symptom that clients observe. The service calls
``ActiveFaults.active(name)`` at exactly one switch per fault, and the comment at that
switch repeats the symptom.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Final

MEMORY_ONLY_LOOKUP: Final = "memory-only-lookup"
LOOKUP_DELETED_ON_COMPLETE: Final = "lookup-deleted-on-complete"
LATE_PLACEHOLDER: Final = "late-placeholder"
NO_PROGRESS_ON_COMPLETE: Final = "no-progress-on-complete"
ZERO_TOTAL_PLACEHOLDER: Final = "zero-total-placeholder"
RACY_PROGRESS_COUNTER: Final = "racy-progress-counter"
STALE_WORKER_SNAPSHOT: Final = "stale-worker-snapshot"
SHARED_RESULT_SLOT: Final = "shared-result-slot"
NO_OWNER_CHECK: Final = "no-owner-check"
WORKER_WITHOUT_STORE: Final = "worker-without-store"
READ_ONCE_RESULTS: Final = "read-once-results"
LOOKUP_TTL_SHORTER: Final = "lookup-ttl-shorter"
RESULTS_TTL_SHORTER: Final = "results-ttl-shorter"
PROGRESS_DROPS_TTL: Final = "progress-drops-ttl"
ORPHANED_ON_WORKER_DEATH: Final = "orphaned-on-worker-death"
STORE_ERROR_AS_NOT_FOUND: Final = "store-error-as-not-found"


@dataclass(frozen=True)
class Fault:
    """One entry of the fault catalogue."""

    name: str
    mechanism: str
    symptom: str


_CATALOGUE: Final = (
    Fault(
        MEMORY_ONLY_LOOKUP,
        mechanism="the scan id to record lookup lives only in the accepting worker's memory",
        symptom="status not_found and results 404 on every other worker",
    ),
    Fault(
        LOOKUP_DELETED_ON_COMPLETE,
        mechanism="the terminal write deletes the lookup key",
        symptom="not_found and 404 soon after the scan is complete",
    ),
    Fault(
        LATE_PLACEHOLDER,
        mechanism="the record is first written when the first strategy finishes, "
        "after the POST has returned",
        symptom="not_found on a poll sent right after the POST",
    ),
    Fault(
        NO_PROGRESS_ON_COMPLETE,
        mechanism="a complete status response omits progress",
        symptom="progress null (0/0) on a finished scan",
    ),
    Fault(
        ZERO_TOTAL_PLACEHOLDER,
        mechanism="the placeholder stores total 0 until the scan finishes",
        symptom="total_strategies 0 while scanning (0/0 on an early poll)",
    ),
    Fault(
        RACY_PROGRESS_COUNTER,
        mechanism="the completed count is read, a store round trip passes, then count+1 "
        "is written, while strategies finish in pairs at the same moment",
        symptom="lost updates, so complete shows fewer strategies than the total",
    ),
    Fault(
        STALE_WORKER_SNAPSHOT,
        mechanism="each worker caches a scan's status response at its first read",
        symptom="progress goes backwards across workers, and scanning after complete",
    ),
    Fault(
        SHARED_RESULT_SLOT,
        mechanism="record, progress and results are keyed by (user, filters), not scan id",
        symptom="a second scan with the same filters resets the first one's progress and results",
    ),
    Fault(
        NO_OWNER_CHECK,
        mechanism="the status read path skips the owner check",
        symptom="one user reads another user's scan status",
    ),
    Fault(
        WORKER_WITHOUT_STORE,
        mechanism="the store client is created only in a worker that has served a POST",
        symptom="status not_found and results 404 on workers that have not served a POST",
    ),
    Fault(
        READ_ONCE_RESULTS,
        mechanism="results are deleted on the first successful read",
        symptom="the second results request for a complete scan is 404",
    ),
    Fault(
        LOOKUP_TTL_SHORTER,
        mechanism="the lookup key's TTL is a tenth of the record's",
        symptom="not_found and 404 while the scan's data still exists (needs virtual time)",
    ),
    Fault(
        RESULTS_TTL_SHORTER,
        mechanism="the results' TTL is a tenth of the status record's",
        symptom="status complete, then results 404 (needs virtual time)",
    ),
    Fault(
        PROGRESS_DROPS_TTL,
        mechanism="progress writes re-set the record and lookup without a TTL, as a plain "
        "SET does, and later refreshes only touch keys that still have one",
        symptom="the scan never expires (needs virtual time)",
    ),
    Fault(
        ORPHANED_ON_WORKER_DEATH,
        mechanism="running scans have no heartbeat and readers never judge them stale; "
        "a worker that shuts down leaves its scans as they are",
        symptom="a scan stays scanning forever after its worker is killed or recycled",
    ),
    Fault(
        STORE_ERROR_AS_NOT_FOUND,
        mechanism="a store error on a read is taken for a missing key, without retries",
        symptom="status not_found and results 404 during a store blip",
    ),
)

KNOWN: Final[Mapping[str, Fault]] = MappingProxyType({fault.name: fault for fault in _CATALOGUE})


class UnknownFaultError(ValueError):
    """A fault name that is not in ``KNOWN``."""

    def __init__(self, name: str) -> None:
        self.name = name
        known = ", ".join(KNOWN)
        super().__init__(f"unknown fault {name!r}; known faults are: {known}")


def parse_fault_names(value: str | Iterable[str]) -> frozenset[str]:
    """Parse a comma-separated string or a list of fault names.

    Blank entries are ignored. Raises UnknownFaultError for a name not in ``KNOWN``.
    """
    items = value.split(",") if isinstance(value, str) else value
    names = frozenset(item.strip() for item in items if item.strip())
    for name in sorted(names):
        if name not in KNOWN:
            raise UnknownFaultError(name)
    return names


@dataclass(frozen=True)
class ActiveFaults:
    """The set of faults enabled in one worker."""

    names: frozenset[str] = frozenset()

    def active(self, name: str) -> bool:
        """Return whether fault ``name`` is enabled.

        Raises UnknownFaultError for a name not in ``KNOWN``, so a misspelt switch in the
        service fails loudly instead of staying off.
        """
        if name not in KNOWN:
            raise UnknownFaultError(name)
        return name in self.names
