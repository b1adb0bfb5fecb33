"""Scale test: the checker judges one million ops within its time budget.

The history is synthetic and correct: 12,500 scans of 40 requests each, polled by
overlapping reads whose progress only grows. One more scan is polled 20,000 times, so
any loop over pairs of one scan's reads would blow the budget.
"""

from __future__ import annotations

import random
import time

from harness.checker import Verdict, check
from harness.history import Function, History, Op, OpType, RunRecord

BUDGET_S = 10.0
"""Time allowed for checking one million ops on a 2-core machine."""

VIRTUAL_OFFSET_NS = 1_700_000_000 * 10**9


class SyntheticHistory:
    def __init__(self, seed: int) -> None:
        self.random = random.Random(seed)
        self.ops: list[Op] = []

    def add(
        self,
        f: Function,
        scan_id: str,
        user: str,
        start_ns: int,
        end_ns: int,
        http_status: int,
        value: dict[str, object],
    ) -> None:
        invoke = Op(
            index=len(self.ops),
            type=OpType.INVOKE,
            f=f,
            process=0,
            real_ns=start_ns,
            virtual_ns=VIRTUAL_OFFSET_NS + start_ns,
            user=user,
            scan_id=None if f is Function.DISCOVER else scan_id,
        )
        completion = Op(
            index=len(self.ops) + 1,
            type=OpType.OK,
            f=f,
            process=0,
            real_ns=end_ns,
            virtual_ns=VIRTUAL_OFFSET_NS + end_ns,
            user=user,
            scan_id=scan_id,
            worker=start_ns % 4,
            worker_pid=1000 + start_ns % 4,
            invoke_index=invoke.index,
            http_status=http_status,
            value=value,
        )
        self.ops.extend((invoke, completion))

    def scan(self, scan_id: str, user: str, base_ns: int, reads: int) -> None:
        """Add a POST and ``reads`` polls whose progress grows with the read's position."""
        total = 14
        value = {"scan_id": scan_id, "total_strategies": total}
        self.add(Function.DISCOVER, scan_id, user, base_ns, base_ns + 1_000, 200, value)
        for position in range(reads):
            start_ns = base_ns + 2_000 + position * 20_000 + self.random.randrange(15_000)
            end_ns = start_ns + self.random.randrange(100, 30_000)
            completed = min(total, position * total // max(reads - 10, 1))
            state = "scanning" if completed < total else "complete"
            if self.random.random() < 0.3:
                self.add_results(scan_id, user, start_ns, end_ns, state)
            else:
                value = {
                    "status": state,
                    "strategies_completed": completed,
                    "total_strategies": total,
                }
                self.add(Function.STATUS, scan_id, user, start_ns, end_ns, 200, value)

    def add_results(self, scan_id: str, user: str, start_ns: int, end_ns: int, state: str) -> None:
        if state == "complete":
            value: dict[str, object] = {
                "status": "complete",
                "strategy_ids": [f"strategy-{number}" for number in range(14)],
            }
            self.add(Function.RESULTS, scan_id, user, start_ns, end_ns, 200, value)
        else:
            value = {"status": "scanning"}
            self.add(Function.RESULTS, scan_id, user, start_ns, end_ns, 202, value)


def test_million_ops_within_budget() -> None:
    synthetic = SyntheticHistory(seed=11)
    synthetic.scan("hot", "user-hot", 0, reads=20_000)
    for number in range(12_500):
        base_ns = (number + 1) * 1_000_000_000
        synthetic.scan(f"scan-{number}", f"user-{number % 50}", base_ns, reads=39)
    history = History(RunRecord(seed=11), synthetic.ops)

    started = time.perf_counter()
    result = check(history)
    elapsed_s = time.perf_counter() - started

    assert len(history.ops) >= 1_000_000
    assert result.violations == []
    assert result.verdict is Verdict.PASS
    assert elapsed_s < BUDGET_S
