"""Merge process histories into one history that the checker can judge.

Each Locust process writes its own history file, with indices local to that file (see
``harness.load.recording``). Merging them:

1. orders every op of every file by ``real_ns``; ties keep the file order, then the line
   order, so an invoke stays before its completion;
2. gives the ops new indices 0, 1, 2, … in that order, and points each completion's
   ``invoke_index`` at the new index of its invoke;
3. renumbers process ids that two files share (possible only for files from different
   machines, where pids repeat), so one id still names one simulated user;
4. fills in the worker index of every op that names a worker pid, when the cluster's pids
   are known: the index is the pid's position in the list, lowest pid first, as the
   routing client numbers workers. An op whose pid is not in the list (a worker that
   was respawned during the run) gets no index.

Example::

    history = merge_files(sorted(Path("load-history").glob("*.jsonl")),
                          worker_pids=[4101, 4102, 4103, 4104])
    write_history(history, Path("history.jsonl"))
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from harness.history import History, HistoryError, HistoryRecorder, Op, RunRecord, read_history


def merge_files(paths: Sequence[Path], *, run: RunRecord | None = None,
                worker_pids: Sequence[int] | None = None) -> History:
    """Read the process histories at ``paths`` and merge them (see ``merge_histories``)."""
    if not paths:
        raise HistoryError("no history files to merge: pass at least one .jsonl file")
    histories = [read_history(path) for path in paths]
    return merge_histories(histories, run=run, worker_pids=worker_pids,
                           sources=[str(path) for path in paths])


def merge_histories(histories: Sequence[History], *, run: RunRecord | None = None,
                    worker_pids: Sequence[int] | None = None,
                    sources: Sequence[str] | None = None) -> History:
    """Merge ``histories`` into one, ordered by ``real_ns`` and renumbered.

    ``run`` opens the merged history; by default the first history's run record does.
    ``worker_pids`` lists the cluster's worker pids; when given, every op's worker index
    is set from it, and when None the indices are left as recorded. ``sources`` names
    the histories in error messages. The ops of ``histories`` are changed in place.

    Raises HistoryError for an index that repeats within one history, or a completion
    whose invoke is missing from its history.
    """
    if not histories:
        raise HistoryError("no histories to merge")
    names = list(sources) if sources is not None else [f"history {number}" for number
                                                        in range(len(histories))]
    _renumber_shared_processes(histories)

    entries = [(op.real_ns, number, position, op)
               for number, history in enumerate(histories)
               for position, op in enumerate(history.ops)]
    entries.sort(key=lambda entry: entry[:3])

    new_index: dict[tuple[int, int], int] = {}
    for merged_index, (_, number, _, op) in enumerate(entries):
        key = (number, op.index)
        if key in new_index:
            raise HistoryError(f"{names[number]}: index {op.index} appears twice; "
                               "each op of a history needs its own index")
        new_index[key] = merged_index

    ops: list[Op] = []
    for merged_index, (_, number, _, op) in enumerate(entries):
        if op.invoke_index is not None:
            invoke = new_index.get((number, op.invoke_index))
            if invoke is None:
                raise HistoryError(f"{names[number]}: op {op.index} completes invoke "
                                   f"{op.invoke_index}, which is not in that history")
            op.invoke_index = invoke
        op.index = merged_index
        ops.append(op)
    if worker_pids is not None:
        set_worker_indices(ops, worker_pids)
    return History(run if run is not None else histories[0].run, ops)


def set_worker_indices(ops: Sequence[Op], worker_pids: Sequence[int]) -> None:
    """Set each op's worker index to its pid's position in ``worker_pids``, or None."""
    index_of = {pid: index for index, pid in enumerate(worker_pids)}
    for op in ops:
        op.worker = index_of.get(op.worker_pid) if op.worker_pid is not None else None


def seen_worker_pids(history: History) -> list[int]:
    """Return the worker pids that served the ops of ``history``, lowest first.

    Use it as ``worker_pids`` when the cluster's own list is not known (a cluster the
    harness did not start). Indices then count only the workers that answered.
    """
    return sorted({op.worker_pid for op in history.ops if op.worker_pid is not None})


def write_history(history: History, path: Path) -> None:
    """Write ``history`` as JSONL: the run record, then one line per op."""
    with path.open("w", encoding="utf-8") as file:
        file.write(_line(history.run.to_json()))
        for op in history.ops:
            file.write(_line(op.to_json()))


def append_to_recorder(recorder: HistoryRecorder, ops: Sequence[Op]) -> int:
    """Append merged ``ops`` to a live history, keeping each completion's invoke.

    The recorder gives the ops new indices after its own. Returns how many were appended.
    """
    new_index: dict[int, int] = {}
    for op in ops:
        fields: dict[str, Any] = {name: getattr(op, name) for name in Op.__slots__
                                  if name != "index"}
        if op.invoke_index is not None:
            fields["invoke_index"] = new_index[op.invoke_index]
        new_index[op.index] = recorder.record(**fields).index
    return len(ops)


def _renumber_shared_processes(histories: Sequence[History]) -> None:
    """Give the process ids that a history shares with an earlier one fresh numbers."""
    taken: set[int] = set()
    next_free = 1 + max((op.process for history in histories for op in history.ops),
                        default=0)
    for history in histories:
        own = {op.process for op in history.ops}
        renamed: dict[int, int] = {}
        for process in sorted(own & taken):
            renamed[process] = next_free
            next_free += 1
        if renamed:
            for op in history.ops:
                op.process = renamed.get(op.process, op.process)
        taken |= own | set(renamed.values())


def _line(record: dict[str, Any]) -> str:
    return json.dumps(record, separators=(",", ":")) + "\n"
