"""Run configuration that the invariants read besides the ops: retention and fault windows."""

from __future__ import annotations

from dataclasses import dataclass

from harness.checker.scans import Request
from harness.history import RunRecord


@dataclass(frozen=True, slots=True)
class CheckContext:
    """The run's configuration as the invariants need it."""

    retention_ns: int
    """How long every key of a scan lives after its last write, in ns of virtual time."""

    @classmethod
    def from_run(cls, run: RunRecord) -> CheckContext:
        return cls(retention_ns=round(run.retention_s * 1e9))

    def store_lost_data(self, written: Request, read: Request) -> bool:
        """Return whether a data-losing store restart came between ``written`` and ``read``.

        known-scan-found excuses a missing scan when this returns True.
        """
        # TODO: the history does not record store restarts yet, so no read is excused.
        return False

    def in_nemesis_window(self, request: Request) -> bool:
        """Return whether ``request`` ran inside a nemesis window.

        no-server-errors skips such requests, because inside a window a 503 is the honest
        response and honest-errors judges it.
        """
        # TODO: the history does not record nemesis windows yet, so every 5xx counts.
        return False
