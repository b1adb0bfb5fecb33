"""Run configuration that the invariants read besides the ops: retention and fault windows."""

from __future__ import annotations

from dataclasses import dataclass

from harness.checker.scans import Request
from harness.history import History, NemesisWindow, RunRecord


@dataclass(frozen=True, slots=True)
class CheckContext:
    """The run's configuration as the invariants need it."""

    retention_ns: int
    """How long every key of a scan lives after its last write, in ns of virtual time."""

    deadline_ns: int = 60_000_000_000
    """How long after its POST every scan must be complete or failed, in ns of virtual time."""

    retry_budget_ns: int = 1_000_000_000
    """How long the service retries a failing store call before it responds 503, in ns
    of real time. A request that began within this long after a nemesis window ended may
    still be retrying what failed inside it."""

    windows: tuple[NemesisWindow, ...] = ()
    """The nemesis windows of the run, in history order."""

    @classmethod
    def from_run(cls, run: RunRecord) -> CheckContext:
        return cls(retention_ns=round(run.retention_s * 1e9),
                   deadline_ns=round(run.deadline_s * 1e9),
                   retry_budget_ns=round(run.retry_budget_s * 1e9))

    @classmethod
    def from_history(cls, history: History) -> CheckContext:
        context = cls.from_run(history.run)
        return cls(retention_ns=context.retention_ns, deadline_ns=context.deadline_ns,
                   retry_budget_ns=context.retry_budget_ns,
                   windows=tuple(history.nemesis_windows))

    def windows_around(self, request: Request) -> list[NemesisWindow]:
        """Return the nemesis windows that ``request`` overlaps in real time.

        Each window counts until the retry budget after its end, because a request that
        began then may still be retrying a store call that failed inside the window. A
        request that never completed overlaps every window that ends after it began.
        """
        if not self.windows:
            return []
        return [
            window for window in self.windows
            if request.start_real_ns <= window.real_end_ns + self.retry_budget_ns
            and request.end_real_ns >= window.real_start_ns
        ]

    def in_nemesis_window(self, request: Request) -> bool:
        """Return whether ``request`` ran inside a nemesis window, or its retry budget.

        no-server-errors accepts a 503 from such a request, because inside a window a 503
        is the honest response and honest-errors judges it.
        """
        return bool(self.windows_around(request))

    def store_lost_data(self, written: Request, read: Request) -> bool:
        """Return whether a data-losing store action came between ``written`` and ``read``.

        ``written`` is a request at or after whose start the scan was written (its POST,
        or a read that later reads showed superseded). A window that ``data_lost`` marks
        counts when it began before ``read`` completed and ended after ``written`` began.
        known-scan-found, results-after-complete, honest-errors and terminates excuse a
        scan that such a window may have erased.
        """
        return any(
            window.data_lost
            and window.real_start_ns <= read.end_real_ns
            and window.real_end_ns >= written.start_real_ns
            for window in self.windows
        )
