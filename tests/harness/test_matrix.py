"""The detection matrix's verdict and page, from literal cells."""

from __future__ import annotations

import json
from pathlib import Path

from harness.matrix import CORRECT, Cell, MatrixConfig, MatrixResult, Row, _read_run, markdown


def cell(variant: str, seed: int, exit_code: int, time_s: float | None = None) -> Cell:
    return Cell(variant, seed, False, exit_code, "fail" if exit_code == 1 else "pass", 10.0,
                caught_by=["poll-every-worker"] if exit_code == 1 else [],
                time_to_detect_s=time_s, ops_to_detect=12 if time_s else None)


def result(correct_codes: list[int], fault_codes: list[int]) -> MatrixResult:
    config = MatrixConfig(seeds=len(fault_codes))
    correct = Row(CORRECT, [cell(CORRECT, seed, code) for seed, code in enumerate(correct_codes)])
    fault = Row("memory-only-lookup", [cell("memory-only-lookup", seed, code, 1.5)
                                       for seed, code in enumerate(fault_codes)])
    return MatrixResult(config, Path("."), correct, [fault], wall_s=30.0)


def test_every_fault_caught_exits_0() -> None:
    assert result([0, 0], [1, 1]).exit_code == 0


def test_missed_seed_exits_1() -> None:
    assert result([0, 0], [1, 0]).exit_code == 1


def test_false_positive_exits_1() -> None:
    assert result([0, 1], [1, 1]).exit_code == 1


def test_markdown_names_rate_and_scenarios() -> None:
    page = markdown(result([0, 0], [1, 0]))

    assert "| `memory-only-lookup` | 1/2 | poll-every-worker | 1.50 s / 1.50 s | 12 | - |" in page
    assert "Correct service: 0 false positive(s) in 2 seed(s)." in page


def test_time_to_detect_counts_from_first_op(tmp_path: Path) -> None:
    (tmp_path / "summary.json").write_text(json.dumps({
        "verdict": "fail",
        "scenarios": [{"name": "results-twice", "verdict": "fail", "duration_s": 2.0}],
        "violations": [
            {"invariant": "results-after-complete", "real_s": [9.0, 8.0, 30.0]},
            {"invariant": "known-scan-found", "real_s": [7.5, 6.0]},
        ],
    }))
    ops = [{"kind": "run"}] + [{"kind": "op", "real_ns": int(t * 1e9)}
                               for t in (5.0, 6.0, 7.0, 7.5, 9.0)]
    (tmp_path / "history.jsonl").write_text("\n".join(json.dumps(op) for op in ops))
    target = Cell("read-once-results", 1, False, 1, None, 20.0)

    _read_run(target, tmp_path)

    assert target.time_to_detect_s == 2.5
    assert target.ops_to_detect == 4
    assert target.caught_by == ["results-twice"]
    assert target.invariants == ["known-scan-found", "results-after-complete"]
