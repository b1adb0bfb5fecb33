"""History: the record of one run, one JSON object per line.

A history opens with a *run record* (seed, faults, store, workers, the retention and
staleness bounds the checker needs), followed by *ops*. Every request a client sends
becomes two ops: an ``invoke`` written just before the request goes out, and a
completion written when its outcome is known:

- ``ok``: the service answered with a success status (2xx);
- ``fail``: the service answered with an error status (4xx, or 5xx on a read);
- ``info``: the outcome is unknown (a timeout, a dropped connection, a 5xx on a POST
  that may have started a scan).

A completion names its invoke through ``invoke_index``. Each op carries the logical
client that sent it (``process``), the worker that served it (index and pid), the scan
it concerns, and two clocks side by side: ``real_ns``, the harness's monotonic clock
since the history began, which orders ops, and ``virtual_ns``, the wall-clock time the
service saw, which TTLs and heartbeats are judged by.

Example, one poll that found a running scan::

    {"kind": "run", "seed": 7, "workers": 4, "retention_s": 600.0, ...}
    {"kind": "op", "index": 0, "type": "invoke", "f": "status", "process": 1, ...}
    {"kind": "op", "index": 1, "type": "ok", "f": "status", "invoke_index": 0,
     "http_status": 200, "value": {"status": "scanning", "strategies_completed": 3,
     "total_strategies": 14}, "worker": 2, "worker_pid": 4242, ...}

Moves of the virtual clock are recorded between the ops as ``clock`` records (see
``ClockMove``), so reports can show when virtual time jumped. Each action of the nemesis
(a killed worker, a store outage) is recorded as a ``nemesis`` record once it has ended
(see ``NemesisWindow``), so the checker can tell which ops ran while it lasted.

The checker reads only this file, never the service.
"""

from __future__ import annotations

import dataclasses
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import IO, Any, TypeVar


class OpType(StrEnum):
    """The kind of an op: a request going out, or how it ended."""

    INVOKE = "invoke"  # the request is about to be sent
    OK = "ok"  # the service answered with a success status
    FAIL = "fail"  # the service answered with an error status: a definite outcome
    INFO = "info"  # no answer, or one that leaves the outcome unknown


class Function(StrEnum):
    """The service operation an op calls."""

    DISCOVER = "discover"  # POST /discover: start a scan
    STATUS = "status"  # GET /status/{scan_id}
    RESULTS = "results"  # GET /results/{scan_id}


class HistoryError(ValueError):
    """A history file that cannot be read: names the line and what is wrong with it."""


@dataclass(frozen=True, slots=True)
class RunRecord:
    """The first line of every history: what the checker needs to know about the run."""

    seed: int
    faults: tuple[str, ...] = ()
    store: str = "fakeredis"
    workers: int = 4
    worker_class: str = "uvicorn"
    retention_s: float = 600.0
    stale_s: float = 30.0
    deadline_s: float = 60.0
    retry_budget_s: float = 1.0
    run_id: str = ""
    key_prefix: str = ""
    started_at: str = ""

    def to_json(self) -> dict[str, Any]:
        record = dataclasses.asdict(self)
        record["faults"] = list(self.faults)
        return {"kind": "run", **record}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> RunRecord:
        known = {f.name for f in dataclasses.fields(cls)}
        values = {key: value for key, value in data.items() if key in known}
        values["faults"] = tuple(values.get("faults", ()))
        return cls(**values)


@dataclass(slots=True)
class Op:
    """One line of a history: an invoke or a completion of one request.

    ``value`` holds what was sent (on an invoke) or a compact form of the answer (on a
    completion): for ``discover`` the ``scan_id`` and ``total_strategies``; for
    ``status`` the ``status`` and, when the answer had progress, ``strategies_completed``
    and ``total_strategies`` (a missing progress is recorded as ``progress: null``); for
    ``results`` the ``status`` and the ``strategy_ids`` of the entries returned.
    """

    index: int
    type: OpType
    f: Function
    process: int
    real_ns: int
    virtual_ns: int
    user: str = ""
    scan_id: str | None = None
    worker: int | None = None
    worker_pid: int | None = None
    invoke_index: int | None = None
    http_status: int | None = None
    value: dict[str, Any] | None = None
    error: str | None = None
    scenario: str | None = None

    @property
    def is_invoke(self) -> bool:
        return self.type is OpType.INVOKE

    def to_json(self) -> dict[str, Any]:
        record: dict[str, Any] = {"kind": "op"}
        for name in self.__slots__:
            value = getattr(self, name)
            if value is not None:
                record[name] = value
        return record

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Op:
        values = {name: data[name] for name in cls.__slots__ if name in data}
        values["type"] = OpType(values["type"])
        values["f"] = Function(values["f"])
        return cls(**values)


@dataclass(frozen=True, slots=True)
class ClockMove:
    """A move of the virtual clock, recorded once every follower had taken it.

    ``action`` is ``freeze``, ``tick``, ``advance`` or ``move``; ``from_virtual_ns`` and
    ``to_virtual_ns`` are the virtual times just before and just after the move.
    ``simulates_dead_worker`` marks a forward move longer than the staleness bound that a
    step made on purpose, while scans were open.
    """

    index: int
    action: str
    real_ns: int
    from_virtual_ns: int
    to_virtual_ns: int
    frozen: bool
    seq: int
    simulates_dead_worker: bool = False
    scenario: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {"kind": "clock", **dataclasses.asdict(self)}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ClockMove:
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{key: value for key, value in data.items() if key in known})


@dataclass(frozen=True, slots=True)
class NemesisWindow:
    """One action of the nemesis, from the moment it began to the moment it ended.

    ``action`` names what was done (``kill-worker``, ``store-outage``, …) and ``target``
    what it was done to (``worker 2``, ``store``). The real times are the harness's
    monotonic clock since the history began, like an op's ``real_ns``, and the virtual
    times are the service's clock at the same moments. An instant action, such as a
    reset of every connection, has equal start and end. ``data_lost`` marks an action
    after which the store no longer holds what it held before (a flush, or a restart
    that kept nothing), so reads that miss a scan written before it are a known loss.
    ``options`` contains the action's parameters, for reports.
    """

    index: int
    action: str
    target: str
    real_start_ns: int
    real_end_ns: int
    virtual_start_ns: int
    virtual_end_ns: int
    data_lost: bool = False
    options: dict[str, Any] = field(default_factory=dict)
    scenario: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {"kind": "nemesis", **dataclasses.asdict(self)}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> NemesisWindow:
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{key: value for key, value in data.items() if key in known})


RecordT = TypeVar("RecordT", ClockMove, NemesisWindow)


@dataclass(slots=True)
class History:
    """A run record, its ops, clock moves and nemesis windows, each in the order written.

    Ops, clock moves and nemesis windows share one index sequence, so an index names one
    line of the file.
    """

    run: RunRecord
    ops: list[Op] = field(default_factory=list)
    clock_moves: list[ClockMove] = field(default_factory=list)
    nemesis_windows: list[NemesisWindow] = field(default_factory=list)

    def pairs(self) -> Iterator[tuple[Op, Op | None]]:
        """Yield each invoke with its completion, or None when it never completed."""
        completions = {op.invoke_index: op for op in self.ops if not op.is_invoke}
        for op in self.ops:
            if op.is_invoke:
                yield op, completions.get(op.index)


class HistoryRecorder:
    """Append ops to a history as they happen, in memory and in a JSONL file.

    Safe to share between threads: each op gets the next index under a lock, so the
    file order is the index order.
    """

    def __init__(self, run: RunRecord, path: Path | None = None) -> None:
        self.history = History(run)
        self._lock = threading.Lock()
        self._next_index = 0
        self._start_ns = time.monotonic_ns()
        self._file: IO[str] | None = None
        if path is not None:
            self._file = path.open("w", encoding="utf-8")
            self._write_line(run.to_json())

    @property
    def origin_ns(self) -> int:
        """The ``time.monotonic_ns()`` reading at which the history began.

        Another process on the same machine computes comparable ``real_ns`` as
        ``time.monotonic_ns() - origin_ns``, because CLOCK_MONOTONIC is shared by every
        process of one machine.
        """
        return self._start_ns

    def real_ns(self) -> int:
        """Return the harness's monotonic time since the history began."""
        return time.monotonic_ns() - self._start_ns

    def record(self, **fields: Any) -> Op:
        """Append one op built from ``fields`` and return it with its index."""
        with self._lock:
            op = Op(index=self._next_index, **fields)
            self._next_index += 1
            self.history.ops.append(op)
            if self._file is not None:
                self._write_line(op.to_json())
            return op

    def record_clock_move(self, **fields: Any) -> ClockMove:
        """Append one clock move built from ``fields`` and return it with its index."""
        with self._lock:
            move = ClockMove(index=self._next_index, real_ns=self.real_ns(), **fields)
            self._next_index += 1
            self.history.clock_moves.append(move)
            if self._file is not None:
                self._write_line(move.to_json())
            return move

    def record_nemesis_window(self, **fields: Any) -> NemesisWindow:
        """Append one nemesis window built from ``fields`` and return it with its index."""
        with self._lock:
            window = NemesisWindow(index=self._next_index, **fields)
            self._next_index += 1
            self.history.nemesis_windows.append(window)
            if self._file is not None:
                self._write_line(window.to_json())
            return window

    def close(self) -> None:
        with self._lock:
            if self._file is not None:
                self._file.close()
                self._file = None

    def _write_line(self, record: dict[str, Any]) -> None:
        assert self._file is not None
        self._file.write(json.dumps(record, separators=(",", ":")) + "\n")
        self._file.flush()


def read_history(path: Path) -> History:
    """Read a JSONL history, raising HistoryError with the line number of a bad line."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise HistoryError(f"cannot read history {path}: {error.strerror}") from error

    lines = [line for line in text.splitlines() if line.strip()]
    if not lines:
        raise HistoryError(f"history {path} is empty: it must open with a run record")

    run = _parse_run(path, lines[0])
    history = History(run)
    for number, line in enumerate(lines[1:], start=2):
        data = _parse_json(path, number, line)
        if data.get("kind") == "clock":
            history.clock_moves.append(_parse_record(ClockMove, path, number, data))
        elif data.get("kind") == "nemesis":
            history.nemesis_windows.append(_parse_record(NemesisWindow, path, number, data))
        else:
            history.ops.append(_parse_op(path, number, data))
    return history


def _parse_run(path: Path, line: str) -> RunRecord:
    data = _parse_json(path, 1, line)
    if data.get("kind") != "run":
        raise HistoryError(
            f"{path}:1: the first line must be a run record with kind 'run', "
            f"found kind {data.get('kind')!r}"
        )
    try:
        return RunRecord.from_json(data)
    except (TypeError, ValueError) as error:
        raise HistoryError(f"{path}:1: invalid run record: {error}") from error


def _parse_record(kind: type[RecordT], path: Path, number: int,
                  data: dict[str, Any]) -> RecordT:
    try:
        return kind.from_json(data)
    except TypeError as error:
        kind_name = data.get("kind")
        raise HistoryError(f"{path}:{number}: invalid {kind_name} record: {error}") from error


def _parse_op(path: Path, number: int, data: dict[str, Any]) -> Op:
    if data.get("kind") != "op":
        raise HistoryError(f"{path}:{number}: expected kind 'op', 'clock' or 'nemesis', "
                           f"found {data.get('kind')!r}")
    try:
        return Op.from_json(data)
    except KeyError as error:
        raise HistoryError(f"{path}:{number}: op is missing the field {error}") from error
    except (TypeError, ValueError) as error:
        raise HistoryError(f"{path}:{number}: invalid op: {error}") from error


def _parse_json(path: Path, number: int, line: str) -> dict[str, Any]:
    try:
        data = json.loads(line)
    except json.JSONDecodeError as error:
        raise HistoryError(f"{path}:{number}: not valid JSON ({error.msg})") from error
    if not isinstance(data, dict):
        raise HistoryError(f"{path}:{number}: expected a JSON object, found {type(data).__name__}")
    return data
