"""Merging process histories: order by real time, new indices, invokes, process ids, workers."""

# The literal files keep one op per line, as a history file has them.
# ruff: noqa: E501

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness.history import HistoryError, HistoryRecorder, OpType, RunRecord, read_history
from harness.load.merge import (
    append_to_recorder,
    merge_files,
    seen_worker_pids,
    set_worker_indices,
    write_history,
)

# Two Locust processes. Process 100 polled scan s1 while process 200 polled s2; their
# ops interleave in real time.
FIRST = """\
{"kind": "run", "seed": 7, "workers": 2}
{"kind": "op", "index": 0, "type": "invoke", "f": "status", "process": 100, "real_ns": 10, "virtual_ns": 1010, "user": "a", "scan_id": "s1"}
{"kind": "op", "index": 1, "type": "ok", "f": "status", "process": 100, "real_ns": 40, "virtual_ns": 1040, "user": "a", "scan_id": "s1", "invoke_index": 0, "http_status": 200, "worker_pid": 5002, "value": {"status": "scanning", "strategies_completed": 1, "total_strategies": 14}}
{"kind": "op", "index": 2, "type": "invoke", "f": "results", "process": 100, "real_ns": 50, "virtual_ns": 1050, "user": "a", "scan_id": "s1"}
{"kind": "op", "index": 3, "type": "fail", "f": "results", "process": 100, "real_ns": 70, "virtual_ns": 1070, "user": "a", "scan_id": "s1", "invoke_index": 2, "http_status": 404, "worker_pid": 5001}
"""

SECOND = """\
{"kind": "run", "seed": 99, "workers": 2}
{"kind": "op", "index": 0, "type": "invoke", "f": "status", "process": 200, "real_ns": 20, "virtual_ns": 1020, "user": "b", "scan_id": "s2"}
{"kind": "op", "index": 1, "type": "ok", "f": "status", "process": 200, "real_ns": 30, "virtual_ns": 1030, "user": "b", "scan_id": "s2", "invoke_index": 0, "http_status": 200, "worker_pid": 5001, "value": {"status": "complete", "strategies_completed": 14, "total_strategies": 14}}
{"kind": "op", "index": 2, "type": "invoke", "f": "status", "process": 200, "real_ns": 60, "virtual_ns": 1060, "user": "b", "scan_id": "s2"}
{"kind": "op", "index": 3, "type": "info", "f": "status", "process": 200, "real_ns": 80, "virtual_ns": 1080, "user": "b", "scan_id": "s2", "invoke_index": 2, "error": "GreenletExit: request cut"}
"""


def write(directory: Path, name: str, text: str) -> Path:
    path = directory / name
    path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture
def files(tmp_path: Path) -> list[Path]:
    return [write(tmp_path, "first.jsonl", FIRST), write(tmp_path, "second.jsonl", SECOND)]


def test_merge_orders_by_real_time(files: list[Path]) -> None:
    history = merge_files(files)

    assert [op.real_ns for op in history.ops] == [10, 20, 30, 40, 50, 60, 70, 80]
    assert [op.process for op in history.ops] == [100, 200, 200, 100, 100, 200, 100, 200]


def test_merge_renumbers_indices(files: list[Path]) -> None:
    history = merge_files(files)

    assert [op.index for op in history.ops] == list(range(8))


def test_merge_remaps_invoke_index(files: list[Path]) -> None:
    history = merge_files(files)

    pairs = {op.index: op.invoke_index for op in history.ops if op.type is not OpType.INVOKE}
    assert pairs == {2: 1, 3: 0, 6: 4, 7: 5}
    for completion, invoke in pairs.items():
        assert invoke is not None
        assert history.ops[invoke].type is OpType.INVOKE
        assert history.ops[invoke].process == history.ops[completion].process
        assert history.ops[invoke].scan_id == history.ops[completion].scan_id


def test_merge_keeps_first_run_record(files: list[Path]) -> None:
    assert merge_files(files).run.seed == 7
    assert merge_files(files, run=RunRecord(seed=3)).run.seed == 3


def test_merge_renumbers_shared_process_ids(tmp_path: Path) -> None:
    # Two machines can produce the same pid, hence the same process ids.
    first = write(tmp_path, "host-a.jsonl", FIRST)
    second = write(tmp_path, "host-b.jsonl", FIRST.replace('"user": "a"', '"user": "c"'))

    history = merge_files([first, second])

    processes_by_user: dict[str, set[int]] = {}
    for op in history.ops:
        processes_by_user.setdefault(op.user, set()).add(op.process)
    assert processes_by_user["a"] == {100}
    assert len(processes_by_user["c"]) == 1
    assert processes_by_user["c"] != {100}


def test_merge_keeps_distinct_process_ids(files: list[Path]) -> None:
    history = merge_files(files)

    assert {op.process for op in history.ops} == {100, 200}


def test_merge_fills_worker_indices(files: list[Path]) -> None:
    history = merge_files(files, worker_pids=[5001, 5002])

    workers = {op.index: op.worker for op in history.ops if op.worker_pid is not None}
    assert workers == {2: 0, 3: 1, 6: 0}
    assert all(op.worker is None for op in history.ops if op.worker_pid is None)


def test_merge_unknown_pid_has_no_index(files: list[Path]) -> None:
    history = merge_files(files, worker_pids=[5001, 6000])

    assert history.ops[3].worker_pid == 5002
    assert history.ops[3].worker is None


def test_seen_worker_pids_lowest_first(files: list[Path]) -> None:
    history = merge_files(files)

    assert seen_worker_pids(history) == [5001, 5002]


def test_set_worker_indices_overwrites(files: list[Path]) -> None:
    history = merge_files(files, worker_pids=[5001, 5002])

    set_worker_indices(history.ops, [5002])

    assert history.ops[3].worker == 0
    assert history.ops[2].worker is None


def test_merge_rejects_missing_invoke(tmp_path: Path) -> None:
    broken = write(tmp_path, "broken.jsonl", FIRST.replace('"invoke_index": 2', '"invoke_index": 9'))

    with pytest.raises(HistoryError, match=r"broken\.jsonl: op 3 completes invoke 9"):
        merge_files([broken])


def test_merge_rejects_repeated_index(tmp_path: Path) -> None:
    broken = write(tmp_path, "broken.jsonl",
                   FIRST.replace('"index": 2, "type": "invoke"', '"index": 1, "type": "invoke"'))

    with pytest.raises(HistoryError, match="index 1 appears twice"):
        merge_files([broken])


def test_merge_needs_files() -> None:
    with pytest.raises(HistoryError, match="no history files to merge"):
        merge_files([])


def test_merged_history_reads_back(files: list[Path], tmp_path: Path) -> None:
    merged = tmp_path / "merged.jsonl"

    write_history(merge_files(files, worker_pids=[5001, 5002]), merged)
    history = read_history(merged)

    lines = merged.read_text(encoding="utf-8").splitlines()
    assert json.loads(lines[0])["kind"] == "run"
    assert len(lines) == 9
    assert [op.index for op in history.ops] == list(range(8))
    assert history.ops[7].invoke_index == 5


def test_append_to_recorder_after_own_ops(files: list[Path], tmp_path: Path) -> None:
    recorder = HistoryRecorder(RunRecord(seed=1), tmp_path / "history.jsonl")
    recorder.record(type=OpType.INVOKE, f=read_history(files[0]).ops[0].f, process=1,
                    real_ns=1, virtual_ns=1)

    appended = append_to_recorder(recorder, merge_files(files).ops)
    recorder.close()

    ops = read_history(tmp_path / "history.jsonl").ops
    assert appended == 8
    assert [op.index for op in ops] == list(range(9))
    assert {op.index: op.invoke_index for op in ops if op.invoke_index is not None} == {
        3: 2, 4: 1, 7: 5, 8: 6}
