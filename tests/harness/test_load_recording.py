"""The process history that each Locust process writes, and the settings it reads."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from harness.clock_state import ClockState, write_state
from harness.history import Function, OpType, RunRecord, read_history
from harness.load.recording import (
    PROCESS_ID_STRIDE,
    LoadSettings,
    ProcessHistory,
    SettingsError,
    VirtualClockReader,
)
from harness.profile import REFERENCE_PROFILE, load_profile
from tests.conftest import REPO_ROOT

REFERENCE = load_profile(REFERENCE_PROFILE)
JOBS_PROFILE = REPO_ROOT / "tests" / "apps" / "jobs_profile.toml"

STATUS_BODY = {"scan_id": "s1", "status": "scanning",
               "progress": {"strategies_completed": 3, "total_strategies": 14,
                            "opportunities_found_so_far": 2, "percentage": 21.4}}


def settings(tmp_path: Path, **overrides: object) -> LoadSettings:
    values: dict[str, object] = {"token_secret": "secret", "history_dir": tmp_path / "h",
                                 "run": RunRecord(seed=5, workers=2)}
    values.update(overrides)
    return LoadSettings(**values)  # type: ignore[arg-type]


def only_file(directory: Path) -> Path:
    files = sorted(directory.glob("*.jsonl"))
    assert len(files) == 1
    return files[0]


def test_settings_need_secret() -> None:
    with pytest.raises(SettingsError, match="SCAN_LOAD_TOKEN_SECRET is not set"):
        LoadSettings.from_env({})


def test_other_profile_needs_no_secret() -> None:
    loaded = LoadSettings.from_env({"SCAN_LOAD_PROFILE": str(JOBS_PROFILE)})

    assert loaded.token_secret is None
    assert loaded.load_profile().name == "jobs example app"


def test_settings_name_a_bad_profile(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text(JOBS_PROFILE.read_text().replace("retention_s = 600", "retention_s = -1"))

    with pytest.raises(SettingsError, match=r"SCAN_LOAD_PROFILE: .*retention_s must be positive"):
        LoadSettings.from_env({"SCAN_LOAD_PROFILE": str(bad)})


def test_settings_reject_bad_number() -> None:
    env = {"SCAN_LOAD_TOKEN_SECRET": "s", "SCAN_LOAD_CONNECTIONS": "many"}

    with pytest.raises(SettingsError, match=r"SCAN_LOAD_CONNECTIONS='many' is invalid"):
        LoadSettings.from_env(env)


def test_settings_round_trip(tmp_path: Path) -> None:
    original = settings(tmp_path, origin_ns=123, connections=2, scan_timeout_s=7.0,
                        clock_file=tmp_path / "clock.json", csv_prefix=tmp_path / "locust",
                        profile_path=JOBS_PROFILE)

    assert LoadSettings.from_env(original.to_env()) == original


def test_settings_defaults() -> None:
    loaded = LoadSettings.from_env({"SCAN_LOAD_TOKEN_SECRET": "s"})

    assert loaded.history_dir is None
    assert loaded.origin_ns == 0
    assert loaded.scenario == "load"
    assert loaded.connections == 4


def test_history_records_invoke_and_ok(tmp_path: Path) -> None:
    history = ProcessHistory(settings(tmp_path, origin_ns=time.monotonic_ns()), REFERENCE)
    process = history.new_process_id()

    invoke = history.invoke(Function.STATUS, process=process, user="u1", scan_id="s1",
                            value=None)
    history.complete(invoke, status_code=200, body=STATUS_BODY, worker_pid=4242, text=None)
    history.close()

    recorded = read_history(only_file(tmp_path / "h"))
    first, second = recorded.ops
    assert recorded.run.seed == 5
    assert (first.index, first.type, first.process, first.user) == (0, OpType.INVOKE, process, "u1")
    assert (second.type, second.invoke_index, second.http_status) == (OpType.OK, 0, 200)
    assert second.value == {"status": "scanning", "strategies_completed": 3,
                            "total_strategies": 14}
    assert second.worker_pid == 4242
    assert second.worker is None
    assert second.scenario == "load"
    assert 0 <= first.real_ns <= second.real_ns < 10**9


def test_discover_takes_scan_id(tmp_path: Path) -> None:
    history = ProcessHistory(settings(tmp_path), REFERENCE)
    invoke = history.invoke(Function.DISCOVER, process=1, user="u1", scan_id=None, value={})

    op = history.complete(invoke, status_code=200, worker_pid=1, text=None,
                          body={"scan_id": "s9", "status": "initiated", "total_strategies": 14})

    assert op is not None
    assert op.scan_id == "s9"
    assert op.value == {"scan_id": "s9", "total_strategies": 14}


@pytest.mark.parametrize(("f", "status_code", "expected"), [
    (Function.DISCOVER, 503, OpType.INFO),
    (Function.STATUS, 503, OpType.FAIL),
    (Function.RESULTS, 404, OpType.FAIL),
    (Function.RESULTS, 202, OpType.OK),
])
def test_completion_types(tmp_path: Path, f: Function, status_code: int,
                          expected: OpType) -> None:
    history = ProcessHistory(settings(tmp_path), REFERENCE)
    invoke = history.invoke(f, process=1, user="u1", scan_id="s1", value=None)

    op = history.complete(invoke, status_code=status_code, body=None, worker_pid=1,
                          text="Service Unavailable")

    assert op is not None
    assert op.type is expected
    assert op.error == (None if status_code < 300 else "Service Unavailable")


@pytest.mark.parametrize(("f", "status_code", "body", "expected"), [
    (Function.DISCOVER, 201, {"job": {"id": 7, "steps": 3}},
     (OpType.OK, 200, {"scan_id": "7", "total_strategies": 3, "service_http_status": 201})),
    (Function.STATUS, 200, {"state": "done", "done_steps": 3, "steps": 3},
     (OpType.OK, 200, {"status": "complete", "strategies_completed": 3,
                       "total_strategies": 3})),
    (Function.STATUS, 404, {"detail": "no such job"},
     (OpType.OK, 200, {"status": "not_found", "service_http_status": 404})),
    (Function.RESULTS, 409, {"detail": "still running"},
     (OpType.OK, 202, {"status": "scanning", "service_http_status": 409})),
])
def test_other_profile_records_canonical_values(
        tmp_path: Path, f: Function, status_code: int, body: dict[str, object],
        expected: tuple[OpType, int, dict[str, object]]) -> None:
    history = ProcessHistory(settings(tmp_path, token_secret=None), load_profile(JOBS_PROFILE))
    invoke = history.invoke(f, process=1, user="u1", scan_id=None, value=None)

    op = history.complete(invoke, status_code=status_code, body=body, worker_pid=1, text=None)

    assert op is not None
    assert (op.type, op.http_status, op.value) == expected
    if f is Function.DISCOVER:
        assert op.scan_id == "7"


def test_unknown_outcome_is_info(tmp_path: Path) -> None:
    history = ProcessHistory(settings(tmp_path), REFERENCE)
    invoke = history.invoke(Function.STATUS, process=1, user="u1", scan_id="s1", value=None)

    op = history.complete_unknown(invoke, "ConnectionRefusedError: refused")

    assert op is not None
    assert (op.type, op.invoke_index, op.http_status) == (OpType.INFO, 0, None)


def test_disabled_history_writes_nothing(tmp_path: Path) -> None:
    history = ProcessHistory(settings(tmp_path, history_dir=None), REFERENCE)

    invoke = history.invoke(Function.STATUS, process=1, user="u1", scan_id="s1", value=None)

    assert invoke is None
    assert history.complete(invoke, status_code=200, body=None, worker_pid=1, text="") is None
    assert not (tmp_path / "h").exists()


def test_process_ids_derive_from_pid(tmp_path: Path) -> None:
    history = ProcessHistory(settings(tmp_path), REFERENCE)

    ids = [history.new_process_id() for _ in range(3)]

    assert ids == [os.getpid() * PROCESS_ID_STRIDE + n for n in range(3)]


def test_forked_child_writes_own_file(tmp_path: Path) -> None:
    history = ProcessHistory(settings(tmp_path), REFERENCE)
    history.invoke(Function.STATUS, process=history.new_process_id(), user="parent",
                   scan_id="s1", value=None)
    history.flush()

    child = os.fork()
    if child == 0:
        history.invoke(Function.STATUS, process=history.new_process_id(), user="child",
                       scan_id="s2", value=None)
        history.close()
        os._exit(0)
    _, status = os.waitpid(child, 0)
    history.close()

    assert os.waitstatus_to_exitcode(status) == 0
    files = sorted((tmp_path / "h").glob("*.jsonl"))
    users = {path.name: [op.user for op in read_history(path).ops] for path in files}
    assert len(files) == 2
    assert sorted(users.values()) == [["child"], ["parent"]]
    child_file = next(name for name, names in users.items() if names == ["child"])
    child_ops = read_history(tmp_path / "h" / child_file).ops
    assert child_ops[0].index == 0
    assert child_ops[0].process == child * PROCESS_ID_STRIDE


def test_clock_reader_follows_file(tmp_path: Path) -> None:
    clock_file = tmp_path / "clock.json"
    reader = VirtualClockReader(clock_file)
    before = time.time_ns()

    assert reader.now_ns() >= before  # no file yet: the wall clock

    write_state(clock_file, ClockState(seq=1, virtual_ns=5_000, frozen=True))
    assert reader.now_ns() == 5_000

    write_state(clock_file, ClockState(seq=2, virtual_ns=9_000, frozen=True))
    assert reader.now_ns() == 9_000


def test_run_record_line_first(tmp_path: Path) -> None:
    history = ProcessHistory(settings(tmp_path), REFERENCE)
    history.invoke(Function.STATUS, process=1, user="u1", scan_id="s1", value=None)
    history.close()

    first_line = only_file(tmp_path / "h").read_text(encoding="utf-8").splitlines()[0]
    assert json.loads(first_line)["kind"] == "run"
    assert json.loads(first_line)["seed"] == 5


def test_op_after_close_appends(tmp_path: Path) -> None:
    history = ProcessHistory(settings(tmp_path), REFERENCE)
    first = history.invoke(Function.STATUS, process=1, user="u1", scan_id="s1", value=None)
    history.close()

    history.complete(first, status_code=200, body=STATUS_BODY, worker_pid=1, text=None)
    history.close()

    ops = read_history(only_file(tmp_path / "h")).ops
    assert [(op.index, op.type) for op in ops] == [(0, OpType.INVOKE), (1, OpType.OK)]
