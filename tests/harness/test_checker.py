"""Tests of the checker on tiny literal histories, one or two per invariant and case."""

from __future__ import annotations

import json
from typing import Any

import pytest

from harness.checker import (
    INVARIANTS,
    CheckResult,
    Invariant,
    Verdict,
    Violation,
    check,
)
from harness.history import Function, History, Op, OpType, RunRecord

V0_S = 1_700_000_000.0
"""Virtual time of real time 0 in these histories, in seconds since the epoch."""

STRATEGIES = [f"strategy-{number}" for number in range(14)]


def ns(seconds: float) -> int:
    return round(seconds * 1e9)


class HistoryBuilder:
    """Append requests, each an invoke and its completion, with explicit times in seconds.

    Virtual time defaults to ``V0_S`` plus real time. Each method returns the completion
    op, or the invoke when ``complete=False`` leaves the request without a completion.
    """

    def __init__(self, retention_s: float = 600.0, first_index: int = 0) -> None:
        self.retention_s = retention_s
        self.ops: list[Op] = []
        self.next_index = first_index

    def request(
        self,
        f: Function,
        real: tuple[float, float],
        *,
        virtual: tuple[float, float] | None = None,
        user: str = "alice",
        scan_id: str | None = "s1",
        type: OpType = OpType.OK,
        http_status: int | None = 200,
        value: dict[str, Any] | None = None,
        worker: int | None = 0,
        complete: bool = True,
    ) -> Op:
        start_s, end_s = real
        if virtual is None:
            virtual = (V0_S + start_s, V0_S + end_s)
        invoke = Op(
            index=self._take_index(),
            type=OpType.INVOKE,
            f=f,
            process=0,
            real_ns=ns(start_s),
            virtual_ns=ns(virtual[0]),
            user=user,
            scan_id=None if f is Function.DISCOVER else scan_id,
        )
        self.ops.append(invoke)
        if not complete:
            return invoke

        completion = Op(
            index=self._take_index(),
            type=type,
            f=f,
            process=0,
            real_ns=ns(end_s),
            virtual_ns=ns(virtual[1]),
            user=user,
            scan_id=scan_id,
            worker=worker,
            worker_pid=None if worker is None else 1000 + worker,
            invoke_index=invoke.index,
            http_status=http_status,
            value=value,
        )
        self.ops.append(completion)
        return completion

    def post(
        self, real: tuple[float, float] = (0.0, 0.1), *, total: int = 14, **options: Any
    ) -> Op:
        scan_id = options.pop("scan_id", "s1")
        value = {"scan_id": scan_id, "total_strategies": total}
        return self.request(Function.DISCOVER, real, scan_id=scan_id, value=value, **options)

    def status(
        self,
        real: tuple[float, float],
        state: str = "scanning",
        completed: int = 0,
        total: int = 14,
        **options: Any,
    ) -> Op:
        value: dict[str, Any] = {
            "status": state,
            "strategies_completed": completed,
            "total_strategies": total,
        }
        if state == "not_found":
            value = {"status": "not_found", "progress": None}
        return self.request(Function.STATUS, real, value=value, **options)

    def status_without_progress(
        self, real: tuple[float, float], state: str = "complete", **options: Any
    ) -> Op:
        value = {"status": state, "progress": None}
        return self.request(Function.STATUS, real, value=value, **options)

    def results(
        self,
        real: tuple[float, float],
        http_status: int = 200,
        *,
        state: str = "complete",
        ids: list[str] | None = None,
        progress: tuple[int, int] | None = None,
        **options: Any,
    ) -> Op:
        value: dict[str, Any] | None = None
        outcome = OpType.OK
        if http_status == 200:
            value = {"status": state, "strategy_ids": STRATEGIES if ids is None else ids}
        elif http_status == 202:
            value = {"status": "scanning"}
            if progress is not None:
                value["strategies_completed"], value["total_strategies"] = progress
        else:
            outcome = OpType.FAIL
        return self.request(
            Function.RESULTS, real, http_status=http_status, type=outcome, value=value, **options
        )

    def error(
        self, f: Function, real: tuple[float, float], http_status: int = 503, **options: Any
    ) -> Op:
        return self.request(f, real, type=OpType.FAIL, http_status=http_status, **options)

    def info(self, f: Function, real: tuple[float, float], **options: Any) -> Op:
        return self.request(f, real, type=OpType.INFO, http_status=None, **options)

    def history(self) -> History:
        return History(RunRecord(seed=7, retention_s=self.retention_s), list(self.ops))

    def _take_index(self) -> int:
        index = self.next_index
        self.next_index += 1
        return index


def judge(builder: HistoryBuilder, invariant: str) -> CheckResult:
    return check(builder.history(), [invariant])


def verdict_of(builder: HistoryBuilder, invariant: str) -> Verdict:
    return judge(builder, invariant).invariants[invariant].verdict


def only_violation(result: CheckResult) -> Violation:
    assert len(result.violations) == 1, [violation.message for violation in result.violations]
    return result.violations[0]


# known-scan-found


def test_found_scan_passes() -> None:
    builder = HistoryBuilder()
    builder.post()
    builder.status((1.0, 1.1), "scanning", 3)

    assert verdict_of(builder, "known-scan-found") is Verdict.PASS


def test_not_found_after_post_fails() -> None:
    builder = HistoryBuilder()
    post = builder.post(worker=0)
    read = builder.status((0.9, 0.9), "not_found", worker=2)

    violation = only_violation(judge(builder, "known-scan-found"))

    assert violation.invariant == "known-scan-found"
    assert violation.scan_id == "s1"
    assert violation.op_indices == (read.index, post.index)
    assert violation.workers == (2, 0)
    assert violation.real_s == (0.9, 0.1)
    assert violation.virtual_s == (V0_S + 0.9, V0_S + 0.1)
    assert violation.message == (
        f"status at op {read.index} on worker 2 returned not_found, 0.9 s after the POST "
        f"that created the scan (discover at op {post.index} on worker 0). The scan was "
        "written at or after that POST and retention is 600 s, so it lives until at least "
        "600 s after the POST. Every worker must find it until then."
    )


def test_results_404_after_post_fails() -> None:
    builder = HistoryBuilder()
    builder.post()
    builder.results((1.0, 1.1), 404)

    assert verdict_of(builder, "known-scan-found") is Verdict.FAIL


def test_not_found_overlapping_post_is_lenient() -> None:
    builder = HistoryBuilder()
    builder.post(real=(0.0, 0.5))
    builder.status((0.2, 0.3), "not_found")
    builder.status((0.4, 0.6), "not_found")
    builder.status((1.0, 1.1), "scanning", 1)

    result = judge(builder, "known-scan-found")

    assert result.violations == []
    assert result.verdict is Verdict.PASS


def test_only_lenient_reads_is_unknown() -> None:
    builder = HistoryBuilder()
    builder.post(real=(0.0, 0.5))
    builder.status((0.2, 0.3), "not_found")

    assert verdict_of(builder, "known-scan-found") is Verdict.UNKNOWN


def test_not_found_after_retention_passes() -> None:
    builder = HistoryBuilder(retention_s=600.0)
    builder.post()
    builder.status((1.0, 1.1), "complete", 14)
    builder.status((2.0, 2.1), "not_found", virtual=(V0_S + 700.0, V0_S + 700.1))

    result = judge(builder, "known-scan-found")

    assert result.violations == []
    assert result.verdict is Verdict.PASS


def test_superseded_read_moves_t_lo() -> None:
    builder = HistoryBuilder(retention_s=600.0)
    builder.post()
    superseded = builder.status((1.0, 1.1), "scanning", 3, virtual=(V0_S + 500, V0_S + 500.1))
    builder.status((2.0, 2.1), "scanning", 5, virtual=(V0_S + 550, V0_S + 550.1))
    missing = builder.status((3.0, 3.1), "not_found", virtual=(V0_S + 700, V0_S + 700.1))

    violation = only_violation(judge(builder, "known-scan-found"))

    assert violation.op_indices[0] == missing.index
    assert violation.op_indices[-1] == superseded.index
    assert f"saw more progress or a later state than status at op {superseded.index}" in (
        violation.message
    )
    assert "lives until at least 1100 s after the POST" in violation.message


def test_unsuperseded_read_keeps_t_lo() -> None:
    builder = HistoryBuilder(retention_s=600.0)
    builder.post()
    builder.status((1.0, 1.1), "scanning", 3, virtual=(V0_S + 500, V0_S + 500.1))
    builder.status((2.0, 2.1), "scanning", 3, virtual=(V0_S + 550, V0_S + 550.1))
    builder.status((3.0, 3.1), "not_found", virtual=(V0_S + 700, V0_S + 700.1))

    assert judge(builder, "known-scan-found").violations == []


def test_overlapping_progress_does_not_move_t_lo() -> None:
    builder = HistoryBuilder(retention_s=600.0)
    builder.post()
    builder.status((1.0, 3.0), "scanning", 3, virtual=(V0_S + 500, V0_S + 502))
    builder.status((2.0, 2.5), "scanning", 5, virtual=(V0_S + 501, V0_S + 501.5))
    builder.status((4.0, 4.1), "not_found", virtual=(V0_S + 700, V0_S + 700.1))

    assert judge(builder, "known-scan-found").violations == []


def test_terminal_read_supersedes_scanning() -> None:
    builder = HistoryBuilder(retention_s=600.0)
    builder.post()
    builder.status_without_progress((1.0, 1.1), "scanning", virtual=(V0_S + 500, V0_S + 500.1))
    builder.results((2.0, 2.1), 200, virtual=(V0_S + 550, V0_S + 550.1))
    builder.status((3.0, 3.1), "not_found", virtual=(V0_S + 700, V0_S + 700.1))

    assert verdict_of(builder, "known-scan-found") is Verdict.FAIL


# results-after-complete


def test_results_after_complete_passes() -> None:
    builder = HistoryBuilder()
    builder.post()
    builder.status((1.0, 1.1), "complete", 14)
    builder.results((1.2, 1.3), 200)

    assert verdict_of(builder, "results-after-complete") is Verdict.PASS


def test_results_404_after_complete_fails() -> None:
    builder = HistoryBuilder()
    builder.post()
    complete = builder.status((1.0, 1.1), "complete", 14, worker=1)
    results = builder.results((1.2, 1.3), 404, worker=3)

    violation = only_violation(judge(builder, "results-after-complete"))

    assert violation.op_indices[:2] == (results.index, complete.index)
    assert violation.workers[:2] == (3, 1)
    assert "Its status code is 404, not 200." in violation.message
    assert "one distinct entry for each of the 14 promised strategies" in violation.message


def test_results_short_after_complete_fails() -> None:
    builder = HistoryBuilder()
    builder.post()
    builder.status((1.0, 1.1), "complete", 14)
    builder.results((1.2, 1.3), 200, ids=STRATEGIES[:12])

    violation = only_violation(judge(builder, "results-after-complete"))

    assert "It has 12 entries where the POST promised 14." in violation.message


def test_results_duplicate_ids_fail() -> None:
    builder = HistoryBuilder()
    builder.post()
    builder.status((1.0, 1.1), "complete", 14)
    builder.results((1.2, 1.3), 200, ids=STRATEGIES[:13] + STRATEGIES[:1])

    violation = only_violation(judge(builder, "results-after-complete"))

    assert "Its strategy_ids contain 1 duplicate." in violation.message


def test_results_after_results_complete_fails() -> None:
    builder = HistoryBuilder()
    builder.post()
    builder.results((1.0, 1.1), 200)
    builder.results((1.2, 1.3), 404)

    assert verdict_of(builder, "results-after-complete") is Verdict.FAIL


def test_results_overlapping_complete_not_judged() -> None:
    builder = HistoryBuilder()
    builder.post()
    builder.status((1.0, 1.5), "complete", 14)
    builder.results((1.2, 1.3), 202)

    assert verdict_of(builder, "results-after-complete") is Verdict.UNKNOWN


def test_results_503_and_info_skipped() -> None:
    builder = HistoryBuilder()
    builder.post()
    builder.status((1.0, 1.1), "complete", 14)
    builder.error(Function.RESULTS, (1.2, 1.3), 503)
    builder.info(Function.RESULTS, (1.4, 1.5))

    result = judge(builder, "results-after-complete")

    assert result.violations == []
    assert result.verdict is Verdict.UNKNOWN


def test_results_beyond_retention_not_judged() -> None:
    builder = HistoryBuilder(retention_s=600.0)
    builder.post()
    builder.status((1.0, 1.1), "complete", 14)
    builder.results((2.0, 2.1), 404, virtual=(V0_S + 650, V0_S + 650.1))

    assert verdict_of(builder, "results-after-complete") is Verdict.UNKNOWN


def test_no_complete_read_is_unknown() -> None:
    builder = HistoryBuilder()
    builder.post()
    builder.status((1.0, 1.1), "scanning", 2)
    builder.results((1.2, 1.3), 202)

    assert verdict_of(builder, "results-after-complete") is Verdict.UNKNOWN


# progress-sane


def test_sane_progress_passes() -> None:
    builder = HistoryBuilder()
    builder.post()
    builder.status((1.0, 1.1), "scanning", 0)
    builder.status((2.0, 2.1), "complete", 14)

    assert verdict_of(builder, "progress-sane") is Verdict.PASS


def test_zero_total_fails() -> None:
    builder = HistoryBuilder()
    post = builder.post(worker=0)
    read = builder.status((1.0, 1.1), "scanning", 0, total=0, worker=2)

    violation = only_violation(judge(builder, "progress-sane"))

    assert violation.op_indices == (read.index, post.index)
    assert violation.message.startswith(
        f"status at op {read.index} on worker 2 returned scanning 0/0. "
        "Its total_strategies is 0 but the POST promised 14."
    )


def test_missing_progress_fails() -> None:
    builder = HistoryBuilder()
    builder.post()
    builder.status_without_progress((1.0, 1.1), "complete")

    violation = only_violation(judge(builder, "progress-sane"))

    assert "returned complete without progress" in violation.message
    assert "It carries no progress." in violation.message


def test_completed_above_total_fails() -> None:
    builder = HistoryBuilder()
    builder.post()
    builder.status((1.0, 1.1), "scanning", 15)

    violation = only_violation(judge(builder, "progress-sane"))

    assert "Its strategies_completed (15) exceeds its total_strategies (14)." in violation.message


def test_negative_completed_fails() -> None:
    builder = HistoryBuilder()
    builder.post()
    builder.status((1.0, 1.1), "scanning", -1)

    violation = only_violation(judge(builder, "progress-sane"))

    assert "Its strategies_completed is negative (-1)." in violation.message


def test_not_found_status_not_judged_for_progress() -> None:
    builder = HistoryBuilder()
    builder.post()
    builder.status((1.0, 1.1), "not_found")

    assert verdict_of(builder, "progress-sane") is Verdict.UNKNOWN


# monotonic-reads


def test_growing_progress_passes() -> None:
    builder = HistoryBuilder()
    builder.post()
    builder.status((1.0, 1.1), "scanning", 3)
    builder.status((2.0, 2.1), "scanning", 7)
    builder.results((3.0, 3.1), 202)
    builder.status((4.0, 4.1), "complete", 14)
    builder.results((5.0, 5.1), 200)

    assert verdict_of(builder, "monotonic-reads") is Verdict.PASS


def test_less_progress_fails() -> None:
    builder = HistoryBuilder()
    builder.post()
    earlier = builder.status((1.0, 1.1), "scanning", 7, worker=3)
    later = builder.status((1.3, 1.4), "scanning", 5, worker=1)

    violation = only_violation(judge(builder, "monotonic-reads"))

    assert violation.op_indices == (earlier.index, later.index)
    assert violation.workers == (3, 1)
    assert violation.message == (
        f"status at op {later.index} on worker 1 returned scanning 5/14 after status at op "
        f"{earlier.index} on worker 3 had returned scanning 7/14, and the second read was "
        "invoked 0.2 s after the first completed. A read must never show fewer strategies "
        "completed than a read that completed before it was invoked, whichever workers "
        "served them."
    )


@pytest.mark.parametrize(
    ("first", "second"),
    [((1.0, 2.0), (1.5, 1.8)), ((1.5, 1.8), (1.0, 2.0)), ((1.0, 1.5), (1.5, 2.0))],
)
def test_overlapping_reads_pass(first: tuple[float, float], second: tuple[float, float]) -> None:
    builder = HistoryBuilder()
    builder.post()
    builder.status(first, "complete", 14)
    builder.status(second, "scanning", 13)

    assert judge(builder, "monotonic-reads").violations == []


def test_read_racing_completion_either_order() -> None:
    for scanning_first in (True, False):
        builder = HistoryBuilder()
        builder.post()
        builder.status((1.0, 1.1), "scanning", 13)
        reads = [((2.0, 2.4), "scanning", 13), ((2.1, 2.2), "complete", 14)]
        if not scanning_first:
            reads.reverse()
        for real, state, completed in reads:
            builder.status(real, state, completed)
        builder.status((3.0, 3.1), "complete", 14)

        result = judge(builder, "monotonic-reads")

        assert result.violations == [], scanning_first
        assert result.verdict is Verdict.PASS, scanning_first


def test_scanning_after_complete_fails() -> None:
    builder = HistoryBuilder()
    builder.post()
    builder.results((1.0, 1.1), 200)
    builder.results((1.2, 1.3), 202)

    violation = only_violation(judge(builder, "monotonic-reads"))

    assert "A scan seen terminal stays terminal" in violation.message


def test_terminal_change_fails() -> None:
    builder = HistoryBuilder()
    builder.post()
    builder.status((1.0, 1.1), "complete", 14)
    builder.status((1.2, 1.3), "failed", 14)

    violation = only_violation(judge(builder, "monotonic-reads"))

    assert "A terminal state never changes into another." in violation.message


def test_each_regressing_read_reported() -> None:
    builder = HistoryBuilder()
    builder.post()
    max_read = builder.status((1.0, 1.1), "scanning", 9)
    builder.status((1.2, 1.3), "scanning", 4)
    builder.status((1.4, 1.5), "scanning", 5)

    violations = judge(builder, "monotonic-reads").violations

    assert len(violations) == 2
    assert violations[0].op_indices[0] == max_read.index
    assert violations[1].op_indices[0] == max_read.index


def test_monotonic_skips_no_data_reads() -> None:
    builder = HistoryBuilder()
    builder.post()
    builder.status((1.0, 1.1), "scanning", 5)
    builder.status((1.2, 1.3), "not_found")
    builder.results((1.4, 1.5), 404)
    builder.error(Function.STATUS, (1.6, 1.7), 503)
    builder.info(Function.STATUS, (1.8, 1.9))
    builder.status((2.0, 2.1), "scanning", 6)

    result = judge(builder, "monotonic-reads")

    assert result.violations == []
    assert result.verdict is Verdict.PASS


def test_single_read_is_unknown() -> None:
    builder = HistoryBuilder()
    builder.post()
    builder.status((1.0, 1.1), "scanning", 5)

    assert verdict_of(builder, "monotonic-reads") is Verdict.UNKNOWN


# complete-is-whole


def test_whole_complete_passes() -> None:
    builder = HistoryBuilder()
    builder.post()
    builder.status((1.0, 1.1), "complete", 14)

    assert verdict_of(builder, "complete-is-whole") is Verdict.PASS


def test_short_complete_fails() -> None:
    builder = HistoryBuilder()
    builder.post()
    read = builder.status((1.0, 1.1), "complete", 12, worker=2)

    violation = only_violation(judge(builder, "complete-is-whole"))

    assert violation.op_indices == (read.index,)
    assert violation.message == (
        f"status at op {read.index} on worker 2 returned complete 12/14. A complete scan "
        "has finished every strategy, so strategies_completed must equal total_strategies."
    )


def test_complete_without_progress_unknown() -> None:
    builder = HistoryBuilder()
    builder.post()
    builder.status_without_progress((1.0, 1.1), "complete")

    assert verdict_of(builder, "complete-is-whole") is Verdict.UNKNOWN


# owner-isolation


def test_other_user_not_found_passes() -> None:
    builder = HistoryBuilder()
    builder.post(user="alice")
    builder.status((1.0, 1.1), "not_found", user="bob")
    builder.results((1.2, 1.3), 404, user="bob")

    assert verdict_of(builder, "owner-isolation") is Verdict.PASS


def test_other_user_status_fails() -> None:
    builder = HistoryBuilder()
    post = builder.post(user="alice")
    read = builder.status((1.0, 1.1), "scanning", 3, user="bob", worker=1)

    violation = only_violation(judge(builder, "owner-isolation"))

    assert violation.op_indices == (read.index, post.index)
    assert violation.message == (
        f"status at op {read.index} on worker 1 returned scanning 3/14 to user 'bob', but "
        f"the scan belongs to user 'alice' (discover at op {post.index} on worker 0). Any "
        "other user must get not_found from status and 404 from results."
    )


def test_other_user_results_fails() -> None:
    builder = HistoryBuilder()
    builder.post(user="alice")
    builder.results((1.0, 1.1), 200, user="bob")

    assert verdict_of(builder, "owner-isolation") is Verdict.FAIL


def test_other_user_503_and_info_skipped() -> None:
    builder = HistoryBuilder()
    builder.post(user="alice")
    builder.error(Function.RESULTS, (1.0, 1.1), 503, user="bob")
    builder.info(Function.STATUS, (1.2, 1.3), user="bob")

    assert verdict_of(builder, "owner-isolation") is Verdict.UNKNOWN


def test_other_user_reads_judged_only_by_isolation() -> None:
    builder = HistoryBuilder()
    builder.post(user="alice")
    builder.status((1.0, 1.1), "complete", 14, user="alice")
    builder.status((1.2, 1.3), "not_found", user="bob")
    builder.results((1.4, 1.5), 404, user="bob")
    builder.status((1.6, 1.7), "scanning", 0, total=0, user="bob")

    result = check(builder.history())

    for name in ("known-scan-found", "monotonic-reads", "progress-sane"):
        assert result.invariants[name].verdict is not Verdict.FAIL, name
    assert result.invariants["results-after-complete"].verdict is Verdict.UNKNOWN
    assert result.invariants["owner-isolation"].verdict is Verdict.FAIL


# no-server-errors


def test_no_5xx_passes() -> None:
    builder = HistoryBuilder()
    builder.post()
    builder.status((1.0, 1.1), "scanning", 1)

    assert verdict_of(builder, "no-server-errors") is Verdict.PASS


def test_500_fails() -> None:
    builder = HistoryBuilder()
    builder.post()
    read = builder.error(Function.STATUS, (1.0, 1.1), 500, worker=3)

    violation = only_violation(judge(builder, "no-server-errors"))

    assert violation.op_indices == (read.index,)
    assert violation.workers == (3,)
    assert violation.message.startswith(f"status at op {read.index} on worker 3 returned HTTP 500.")


def test_503_fails() -> None:
    builder = HistoryBuilder()
    builder.post()
    builder.error(Function.RESULTS, (1.0, 1.1), 503)

    assert verdict_of(builder, "no-server-errors") is Verdict.FAIL


def test_failed_post_grouped_under_none() -> None:
    builder = HistoryBuilder()
    builder.request(Function.DISCOVER, (0.0, 0.1), scan_id=None, type=OpType.INFO, http_status=502)

    violation = only_violation(judge(builder, "no-server-errors"))

    assert violation.scan_id is None


def test_unknown_scan_judged_only_for_5xx() -> None:
    builder = HistoryBuilder()
    builder.status((1.0, 1.1), "not_found", scan_id="never-posted")
    builder.error(Function.STATUS, (1.2, 1.3), 500, scan_id="never-posted")

    result = check(builder.history())

    assert result.scans == 0
    assert result.invariants["known-scan-found"].verdict is Verdict.UNKNOWN
    assert result.invariants["known-scan-found"].scans_unknown == 0
    assert result.invariants["no-server-errors"].verdict is Verdict.FAIL
    assert only_violation(result).scan_id == "never-posted"


# Missing completions, subsets and the result as a whole


def test_missing_completion_is_info() -> None:
    builder = HistoryBuilder()
    builder.post()
    builder.status((1.0, 1.1), "scanning", 5)
    builder.status((1.2, 1.3), "scanning", 2, complete=False)

    result = check(builder.history())

    assert result.violations == []
    assert result.invariants["monotonic-reads"].verdict is Verdict.UNKNOWN


def test_missing_post_completion_ignores_scan() -> None:
    builder = HistoryBuilder()
    builder.post(complete=False)
    builder.status((1.0, 1.1), "not_found", scan_id="s1")

    result = check(builder.history())

    assert result.scans == 0
    assert result.violations == []
    assert result.verdict is Verdict.PASS


def test_subset_history_maps_by_index() -> None:
    builder = HistoryBuilder(first_index=1000)
    builder.post(scan_id="a")
    builder.post(scan_id="b", real=(0.2, 0.3))
    builder.status((1.0, 1.1), "scanning", 7, scan_id="a")
    builder.status((1.2, 1.3), "scanning", 9, scan_id="b")
    later = builder.status((1.4, 1.5), "scanning", 5, scan_id="a")
    history = builder.history()
    history.ops = [op for op in history.ops if op.scan_id != "b" and op.index != 1002]

    result = check(history, ["monotonic-reads", "known-scan-found"])

    assert result.scans == 1
    assert only_violation(result).op_indices[1] == later.index


def test_overall_verdicts_fold() -> None:
    builder = HistoryBuilder()
    builder.post()
    builder.status((1.0, 1.1), "complete", 12)

    result = check(builder.history())

    assert result.verdict is Verdict.FAIL
    assert result.invariants["complete-is-whole"].verdict is Verdict.FAIL
    assert result.invariants["known-scan-found"].verdict is Verdict.PASS
    assert result.invariants["results-after-complete"].verdict is Verdict.UNKNOWN
    assert result.scans == 1


def test_empty_history_is_unknown() -> None:
    result = check(HistoryBuilder().history())

    assert result.verdict is Verdict.UNKNOWN
    assert result.scans == 0
    assert list(result.invariants) == list(INVARIANTS)


def test_result_serialises_to_json() -> None:
    builder = HistoryBuilder()
    builder.post()
    builder.status((1.0, 1.1), "scanning", 9)
    builder.status((1.2, 1.3), "scanning", 2)

    data = json.loads(json.dumps(check(builder.history()).to_json()))

    assert data["verdict"] == "fail"
    assert data["scans"] == 1
    assert data["invariants"]["monotonic-reads"]["scans_failed"] == 1
    assert data["violations"][0]["invariant"] == "monotonic-reads"
    assert data["violations"][0]["workers"] == [0]


def test_unknown_invariant_name_raises() -> None:
    with pytest.raises(ValueError) as raised:
        check(HistoryBuilder().history(), ["known-scan-found", "monotonic", "expiry"])

    assert str(raised.value) == (
        "unknown invariants 'monotonic', 'expiry'. Known invariants: known-scan-found, "
        "results-after-complete, expires, progress-sane, monotonic-reads, complete-is-whole, "
        "owner-isolation, terminates, honest-errors, no-server-errors."
    )


def test_single_name_string_accepted() -> None:
    builder = HistoryBuilder()
    builder.post()
    builder.status((1.0, 1.1), "scanning", 3)

    result = check(builder.history(), "progress-sane")

    assert list(result.invariants) == ["progress-sane"]


def test_every_invariant_has_description() -> None:
    for name, invariant in INVARIANTS.items():
        assert invariant.name == name
        assert invariant.description, name


def test_crashing_invariant_is_unknown(monkeypatch: pytest.MonkeyPatch) -> None:
    def crash(scan: object, context: object) -> None:
        raise RuntimeError("boom")

    monkeypatch.setitem(
        INVARIANTS, "progress-sane", Invariant("progress-sane", "crashes for the test", crash)
    )
    builder = HistoryBuilder()
    builder.post()
    builder.status((1.0, 1.1), "scanning", 3)

    result = check(builder.history(), ["progress-sane", "known-scan-found"])
    crashed = result.invariants["progress-sane"]

    assert crashed.verdict is Verdict.UNKNOWN
    assert crashed.error == "RuntimeError: boom (scan s1)"
    assert crashed.scans_unknown == 1
    assert result.invariants["known-scan-found"].verdict is Verdict.PASS


def test_crash_never_hides_failure(monkeypatch: pytest.MonkeyPatch) -> None:
    original = INVARIANTS["complete-is-whole"]

    def crash_on_b(scan: Any, context: Any) -> Any:
        if scan.scan_id == "b":
            raise KeyError("total")
        return original.judge(scan, context)

    monkeypatch.setitem(
        INVARIANTS, original.name, Invariant(original.name, original.description, crash_on_b)
    )
    builder = HistoryBuilder()
    builder.post(scan_id="a")
    builder.post(scan_id="b", real=(0.2, 0.3))
    builder.status((1.0, 1.1), "complete", 12, scan_id="a")
    builder.status((1.2, 1.3), "complete", 14, scan_id="b")

    result = check(builder.history(), [original.name])
    judged = result.invariants[original.name]

    assert judged.verdict is Verdict.FAIL
    assert judged.scans_failed == 1
    assert judged.scans_unknown == 1
    assert judged.error == "KeyError: 'total' (scan b)"
