"""The checker and nemesis windows: terminates, honest-errors, and what a window excuses.

Tiny literal histories as in test_checker.py, plus nemesis windows. Each rule is shown
both ways: a history that breaks it is caught, and one that keeps it passes.
"""

from __future__ import annotations

from typing import Any

from harness.checker import CheckResult, Verdict, check
from harness.history import Function, History, NemesisWindow, RunRecord
from tests.harness.test_checker import V0_S, HistoryBuilder, ns, only_violation


class NemesisHistoryBuilder(HistoryBuilder):
    """A HistoryBuilder that also records nemesis windows, indexed like the ops."""

    def __init__(self, deadline_s: float = 60.0, retry_budget_s: float = 1.0) -> None:
        super().__init__()
        self.deadline_s = deadline_s
        self.retry_budget_s = retry_budget_s
        self.windows: list[NemesisWindow] = []

    def window(self, real: tuple[float, float], action: str = "store-errors", *,
               data_lost: bool = False, target: str = "store") -> NemesisWindow:
        start_s, end_s = real
        window = NemesisWindow(
            index=self._take_index(), action=action, target=target,
            real_start_ns=ns(start_s), real_end_ns=ns(end_s),
            virtual_start_ns=ns(V0_S + start_s), virtual_end_ns=ns(V0_S + end_s),
            data_lost=data_lost,
        )
        self.windows.append(window)
        return window

    def history(self) -> History:
        run = RunRecord(seed=7, retention_s=self.retention_s, deadline_s=self.deadline_s,
                        retry_budget_s=self.retry_budget_s)
        return History(run, list(self.ops), nemesis_windows=list(self.windows))


def judge(builder: HistoryBuilder, invariant: str) -> CheckResult:
    return check(builder.history(), [invariant])


def verdict_of(builder: HistoryBuilder, invariant: str) -> Verdict:
    return judge(builder, invariant).invariants[invariant].verdict


def virtual(start_s: float, end_s: float) -> dict[str, Any]:
    """Options that give a request its own virtual times, in seconds after V0_S."""
    return {"virtual": (V0_S + start_s, V0_S + end_s)}


# terminates


def test_failed_within_deadline_passes() -> None:
    builder = NemesisHistoryBuilder()
    builder.post()
    builder.status((1.0, 1.1), "scanning", 2)
    builder.window((1.2, 1.5), "kill-worker", target="worker 0")
    builder.status((2.0, 2.1), "failed", 2, **virtual(32.0, 32.1))

    assert verdict_of(builder, "terminates") is Verdict.PASS


def test_scanning_after_deadline_fails() -> None:
    builder = NemesisHistoryBuilder(deadline_s=60.0)
    post = builder.post()
    builder.status((1.0, 1.1), "scanning", 2)
    late = builder.status((2.0, 2.1), "scanning", 2, worker=1, **virtual(61.0, 61.1))

    violation = only_violation(judge(builder, "terminates"))

    assert violation.invariant == "terminates"
    assert violation.op_indices == (late.index, post.index)
    assert violation.workers == (1, 0)
    assert violation.message.startswith(
        f"status at op {late.index} on worker 1 returned scanning 2/14, 61 s of virtual time "
        f"after the POST that created the scan (discover at op {post.index} on worker 0). "
        "Every accepted scan must be complete or failed within 60 s (deadline_s)."
    )


def test_deadline_from_run_record() -> None:
    builder = NemesisHistoryBuilder(deadline_s=10.0)
    builder.post()
    builder.status((1.0, 1.1), "scanning", 2, **virtual(11.0, 11.1))

    assert verdict_of(builder, "terminates") is Verdict.FAIL


def test_scanning_before_deadline_unknown() -> None:
    builder = NemesisHistoryBuilder()
    builder.post()
    builder.status((1.0, 1.1), "scanning", 2, **virtual(59.0, 59.1))

    assert verdict_of(builder, "terminates") is Verdict.UNKNOWN


def test_terminal_only_after_deadline_unknown() -> None:
    # It may have ended before the deadline, unseen.
    builder = NemesisHistoryBuilder()
    builder.post()
    builder.status((1.0, 1.1), "complete", 14, **virtual(70.0, 70.1))

    assert verdict_of(builder, "terminates") is Verdict.UNKNOWN


def test_terminal_then_late_read_passes() -> None:
    builder = NemesisHistoryBuilder()
    builder.post()
    builder.status((1.0, 1.1), "complete", 14)
    builder.status((2.0, 2.1), "not_found", **virtual(700.0, 700.1))

    assert verdict_of(builder, "terminates") is Verdict.PASS


def test_data_loss_makes_scanning_unknown() -> None:
    builder = NemesisHistoryBuilder()
    builder.post()
    builder.window((0.5, 0.6), "flush-store", data_lost=True)
    builder.status((2.0, 2.1), "scanning", 2, **virtual(61.0, 61.1))

    assert verdict_of(builder, "terminates") is Verdict.UNKNOWN


def test_loss_before_post_not_excused() -> None:
    builder = NemesisHistoryBuilder()
    builder.window((0.0, 0.05), "flush-store", data_lost=True)
    builder.post((0.1, 0.2))
    builder.status((2.0, 2.1), "scanning", 2, **virtual(61.0, 61.1))

    assert verdict_of(builder, "terminates") is Verdict.FAIL


# honest-errors


def test_503_in_window_passes() -> None:
    builder = NemesisHistoryBuilder()
    builder.post()
    builder.window((1.0, 2.0))
    builder.error(Function.STATUS, (1.1, 2.2), 503)
    builder.error(Function.RESULTS, (1.2, 2.3), 503)

    assert verdict_of(builder, "honest-errors") is Verdict.PASS


def test_scan_in_window_passes() -> None:
    builder = NemesisHistoryBuilder()
    builder.post()
    builder.window((1.0, 2.0), "store-latency")
    builder.status((1.1, 1.4), "scanning", 5)
    builder.results((1.5, 1.8), 202)

    assert verdict_of(builder, "honest-errors") is Verdict.PASS


def test_not_found_in_window_fails() -> None:
    builder = NemesisHistoryBuilder()
    post = builder.post()
    window = builder.window((1.0, 2.0))
    read = builder.status((1.1, 1.2), "not_found", worker=2)

    violation = only_violation(judge(builder, "honest-errors"))

    assert violation.op_indices == (read.index, post.index)
    assert violation.nemesis_windows == (window.index,)
    assert violation.message.startswith(
        f"status at op {read.index} on worker 2 returned not_found during nemesis window "
        f"{window.index} (store-errors on store, 1.000 s to 2.000 s), 1.2 s after the POST"
    )
    assert violation.message.count(f"nemesis window {window.index} ") == 1


def test_404_in_window_fails() -> None:
    builder = NemesisHistoryBuilder()
    builder.post()
    builder.window((1.0, 2.0), "store-hang")
    builder.results((1.1, 1.2), 404)

    assert verdict_of(builder, "honest-errors") is Verdict.FAIL


def test_500_in_window_fails_both() -> None:
    builder = NemesisHistoryBuilder()
    builder.post()
    builder.window((1.0, 2.0), "store-outage")
    builder.error(Function.STATUS, (1.1, 1.2), 500)

    result = check(builder.history(), ["honest-errors", "no-server-errors"])

    assert result.invariants["honest-errors"].verdict is Verdict.FAIL
    assert result.invariants["no-server-errors"].verdict is Verdict.FAIL


def test_retry_budget_extends_window() -> None:
    builder = NemesisHistoryBuilder(retry_budget_s=1.0)
    builder.post()
    builder.window((1.0, 2.0))
    builder.status((2.9, 3.0), "not_found")

    assert verdict_of(builder, "honest-errors") is Verdict.FAIL


def test_read_after_budget_not_judged() -> None:
    builder = NemesisHistoryBuilder(retry_budget_s=1.0)
    builder.post()
    builder.window((1.0, 2.0))
    builder.status((3.1, 3.2), "not_found")

    result = check(builder.history(), ["honest-errors", "known-scan-found"])

    assert result.invariants["honest-errors"].verdict is Verdict.UNKNOWN
    assert result.invariants["known-scan-found"].verdict is Verdict.FAIL


def test_no_windows_unknown() -> None:
    builder = NemesisHistoryBuilder()
    builder.post()
    builder.status((1.0, 1.1), "not_found")

    assert verdict_of(builder, "honest-errors") is Verdict.UNKNOWN


def test_other_users_not_judged() -> None:
    builder = NemesisHistoryBuilder()
    builder.post()
    builder.window((1.0, 2.0))
    builder.status((1.1, 1.2), "not_found", user="bob")

    assert verdict_of(builder, "honest-errors") is Verdict.UNKNOWN


def test_info_in_window_not_judged() -> None:
    builder = NemesisHistoryBuilder()
    builder.post()
    builder.window((1.0, 2.0), "kill-worker", target="worker 0")
    builder.info(Function.STATUS, (1.1, 6.1))

    assert verdict_of(builder, "honest-errors") is Verdict.UNKNOWN


def test_expired_scan_not_judged() -> None:
    builder = NemesisHistoryBuilder()
    builder.post()
    builder.window((1.0, 2.0))
    builder.status((1.1, 1.2), "not_found", **virtual(700.0, 700.1))

    assert verdict_of(builder, "honest-errors") is Verdict.UNKNOWN


def test_data_loss_excuses_not_found() -> None:
    builder = NemesisHistoryBuilder()
    builder.post()
    builder.status((0.5, 0.6), "complete", 14)
    builder.window((1.0, 1.5), "restart-store-losing-data", data_lost=True)
    builder.status((1.2, 1.3), "not_found")
    builder.results((1.6, 1.7), 404)

    result = check(builder.history(), ["honest-errors", "known-scan-found",
                                       "results-after-complete"])

    assert result.verdict is not Verdict.FAIL, [v.message for v in result.violations]
    assert result.invariants["known-scan-found"].verdict is Verdict.PASS
    assert result.invariants["honest-errors"].verdict is Verdict.UNKNOWN
    assert result.invariants["results-after-complete"].verdict is Verdict.UNKNOWN


def test_scan_after_data_loss_judged() -> None:
    builder = NemesisHistoryBuilder()
    builder.window((0.0, 0.05), "flush-store", data_lost=True)
    builder.post((0.1, 0.2))
    builder.status((1.0, 1.1), "not_found")

    assert verdict_of(builder, "known-scan-found") is Verdict.FAIL


# no-server-errors and the windows of violations


def test_503_in_window_not_server_error() -> None:
    builder = NemesisHistoryBuilder()
    builder.post()
    builder.window((1.0, 2.0), "store-outage")
    builder.error(Function.STATUS, (1.5, 2.5), 503)
    builder.status((3.5, 3.6), "scanning", 3)

    assert verdict_of(builder, "no-server-errors") is Verdict.PASS


def test_503_after_budget_server_error() -> None:
    builder = NemesisHistoryBuilder(retry_budget_s=1.0)
    builder.post()
    builder.window((1.0, 2.0), "store-outage")
    read = builder.error(Function.STATUS, (3.5, 3.6), 503)

    violation = only_violation(judge(builder, "no-server-errors"))

    assert violation.op_indices == (read.index,)
    assert violation.nemesis_windows == ()
    assert "Outside a nemesis window the store works" in violation.message


def test_violation_names_overlapped_window() -> None:
    builder = NemesisHistoryBuilder()
    builder.post()
    window = builder.window((1.0, 2.0), "kill-worker", target="worker 1")
    builder.status((1.5, 1.6), "scanning", 5)
    builder.status((1.7, 1.8), "scanning", 3)

    violation = only_violation(judge(builder, "monotonic-reads"))

    assert violation.nemesis_windows == (window.index,)
    assert violation.message.endswith(
        f" It ran during nemesis window {window.index} (kill-worker on worker 1, "
        "1.000 s to 2.000 s)."
    )


def test_violation_outside_windows_unchanged() -> None:
    builder = NemesisHistoryBuilder()
    builder.post()
    builder.window((1.0, 2.0), "kill-worker", target="worker 1")
    builder.status((5.5, 5.6), "scanning", 5)
    builder.status((5.7, 5.8), "scanning", 3)

    violation = only_violation(judge(builder, "monotonic-reads"))

    assert violation.nemesis_windows == ()
    assert "nemesis window" not in violation.message
