"""History files: nemesis windows written between ops and read back."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.history import (
    Function,
    HistoryError,
    HistoryRecorder,
    OpType,
    RunRecord,
    read_history,
)


def test_nemesis_window_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "history.jsonl"
    recorder = HistoryRecorder(RunRecord(seed=3, retry_budget_s=0.5), path)
    op = recorder.record(type=OpType.INVOKE, f=Function.STATUS, process=1, real_ns=10,
                         virtual_ns=1000, scan_id="s1")
    window = recorder.record_nemesis_window(
        action="kill-worker", target="worker 2", real_start_ns=20, real_end_ns=30,
        virtual_start_ns=2000, virtual_end_ns=3000, data_lost=False,
        options={"pid": 4242, "replacement_pid": 4343}, scenario="worker-killed-mid-scan")
    recorder.close()

    history = read_history(path)

    assert op.index == 0
    assert window.index == 1
    assert history.nemesis_windows == [window]
    assert history.run.retry_budget_s == 0.5
    assert len(history.ops) == 1


def test_unknown_record_kind_named(tmp_path: Path) -> None:
    path = tmp_path / "history.jsonl"
    path.write_text('{"kind": "run", "seed": 1}\n{"kind": "weather"}\n', encoding="utf-8")

    with pytest.raises(HistoryError, match="expected kind 'op', 'clock' or 'nemesis', "
                                           "found 'weather'"):
        read_history(path)
