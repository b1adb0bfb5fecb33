"""The main job end to end: real workers, a real store, every scenario, one verdict."""

from __future__ import annotations

import json
from pathlib import Path

import psutil
import pytest

from harness.history import History
from harness.runner import ExitCode, RunConfig, execute

pytestmark = pytest.mark.e2e

# Each fault and an invariant that must catch it.
EXPECTED_INVARIANT = {
    "memory-only-lookup": "known-scan-found",
    "late-placeholder": "known-scan-found",
    "lookup-deleted-on-complete": "known-scan-found",
    "no-progress-on-complete": "progress-sane",
    "zero-total-placeholder": "progress-sane",
    "racy-progress-counter": "complete-is-whole",
    "stale-worker-snapshot": "monotonic-reads",
    "shared-result-slot": "monotonic-reads",
    "no-owner-check": "owner-isolation",
    "worker-without-store": "known-scan-found",
    "read-once-results": "results-after-complete",
    "lookup-ttl-shorter": "known-scan-found",
    "results-ttl-shorter": "results-after-complete",
    "progress-drops-ttl": "expires",
    "orphaned-on-worker-death": "terminates",
    "store-error-as-not-found": "honest-errors",
}

TTL_FAULTS = ("lookup-ttl-shorter", "results-ttl-shorter", "progress-drops-ttl")
NEMESIS_SCENARIOS = ("worker-killed-mid-scan", "workers-recycled-under-polling",
                     "store-blip-during-polling", "latency-spike", "reset-after-write",
                     "store-restart")
STORE_FAULT_ACTIONS = {"store-outage", "store-errors", "store-hang", "store-latency",
                       "reset-after-reply", "restart-store"}
TTL_SCENARIOS = ("retention-boundary", "expiry-after-an-hour", "clock-moves-while-scanning")


def own_children() -> list[int]:
    return [child.pid for child in psutil.Process().children(recursive=True)
            if child.status() != psutil.STATUS_ZOMBIE]


def read_summary(run_dir: Path) -> dict:
    return json.loads((run_dir / "summary.json").read_text(encoding="utf-8"))


@pytest.mark.parametrize("store", ["fakeredis", "redis-server"])
def test_correct_service_passes(store: str, tmp_path: Path) -> None:
    outcome = execute(RunConfig(seed=11, store=store, out=tmp_path / "run"))

    summary = read_summary(outcome.run_dir)
    assert outcome.exit_code == ExitCode.PASS, summary["violations"]
    assert summary["verdict"] == "pass"
    assert len(summary["scenarios"]) >= 6
    assert all(scenario["verdict"] == "pass" for scenario in summary["scenarios"])
    assert sorted(summary["counts"]["by_worker"]) == ["0", "1", "2", "3"]
    assert own_children() == []


@pytest.mark.parametrize("fault", sorted(EXPECTED_INVARIANT))
def test_fault_is_caught(fault: str, tmp_path: Path) -> None:
    outcome = execute(RunConfig(seed=5, faults=(fault,), out=tmp_path / "run"))

    summary = read_summary(outcome.run_dir)
    caught_by = {violation["invariant"] for violation in summary["violations"]}
    assert outcome.exit_code == ExitCode.VIOLATION
    assert summary["verdict"] == "fail"
    assert EXPECTED_INVARIANT[fault] in caught_by
    assert own_children() == []


@pytest.mark.parametrize("fault", TTL_FAULTS)
def test_ttl_fault_caught_on_redis_server(fault: str, tmp_path: Path) -> None:
    outcome = execute(RunConfig(seed=6, store="redis-server", faults=(fault,),
                                scenarios=TTL_SCENARIOS, out=tmp_path / "run"))

    summary = read_summary(outcome.run_dir)
    caught_by = {violation["invariant"] for violation in summary["violations"]}
    assert outcome.exit_code == ExitCode.VIOLATION
    assert EXPECTED_INVARIANT[fault] in caught_by
    assert own_children() == []


@pytest.mark.parametrize("driver", ["time-machine", "freezegun"])
def test_ttl_scenarios_pass_with_each_driver(driver: str, tmp_path: Path) -> None:
    outcome = execute(RunConfig(seed=8, clock_driver=driver, scenarios=TTL_SCENARIOS,
                                out=tmp_path / "run"))

    summary = read_summary(outcome.run_dir)
    assert outcome.exit_code == ExitCode.PASS, summary["violations"]
    assert [scenario["verdict"] for scenario in summary["scenarios"]] == ["pass"] * 3


def test_run_files_are_written(tmp_path: Path) -> None:
    outcome = execute(RunConfig(seed=3, scenarios=("results-twice",), out=tmp_path / "run"))

    names = {path.name for path in outcome.run_dir.iterdir()}
    assert {"history.jsonl", "summary.json", "junit.xml", "service.log",
            "store.log", "harness.log"} <= names
    assert outcome.exit_code == ExitCode.PASS


def test_same_seed_same_workers(tmp_path: Path) -> None:
    def routes(run: str) -> list[tuple[str, str, int | None]]:
        outcome = execute(RunConfig(seed=42, scenarios=("results-twice", "follow-progress"),
                                    out=tmp_path / run))
        assert outcome.history is not None
        return [(op.scenario or "", op.f.value, op.worker) for op in outcome.history.ops
                if op.type.value == "invoke" and op.f.value != "status"]

    assert routes("first") == routes("second")


@pytest.mark.parametrize("store", ["fakeredis", "redis-server"])
def test_nemesis_scenarios_survived(store: str, tmp_path: Path) -> None:
    outcome = execute(RunConfig(seed=12, store=store, scenarios=NEMESIS_SCENARIOS,
                                out=tmp_path / "run"))

    summary = read_summary(outcome.run_dir)
    assert outcome.exit_code == ExitCode.PASS, summary["violations"]
    assert [scenario["verdict"] for scenario in summary["scenarios"]] == ["pass"] * 6
    history = outcome.history
    assert history is not None
    actions = {window.action for window in history.nemesis_windows}
    assert actions >= {"kill-worker", "recycle-worker", "restart-store-losing-data"}
    assert actions >= STORE_FAULT_ACTIONS - {"store-hang"}

    # Every scan ends, except the one the data-losing restart erased on purpose.
    lost_until_ns = max(window.real_end_ns for window in history.nemesis_windows
                        if window.data_lost)
    accepted = {op.scan_id for op in history.ops
                if op.f.value == "discover" and op.type.value == "ok"}
    ended = {op.scan_id for op in history.ops if op.type.value == "ok"
             and (op.value or {}).get("status") in ("complete", "failed")}
    never_ended = accepted - ended
    assert len(accepted) >= 8
    assert len(never_ended) <= 1
    assert never_ended <= _scans_written_before(history, lost_until_ns)

    # No read during a store fault returned not_found, 404 or a 500.
    store_faults = [window for window in history.nemesis_windows
                    if window.action in STORE_FAULT_ACTIONS]
    invokes = {op.index: op for op in history.ops if op.type.value == "invoke"}
    for op in history.ops:
        if op.type.value == "invoke" or op.f.value == "discover":
            continue
        invoke = invokes[op.invoke_index or 0]
        during = any(invoke.real_ns <= window.real_end_ns and op.real_ns >= window.real_start_ns
                     for window in store_faults)
        if during:
            assert op.http_status in (200, 202, 503), op
            assert (op.value or {}).get("status") != "not_found", op
    assert own_children() == []


def _scans_written_before(history: History, lost_until_ns: int) -> set[str | None]:
    """Return the scans whose POST was invoked before the data-losing restart ended."""
    invokes = {op.index: op for op in history.ops if op.type.value == "invoke"}
    return {op.scan_id for op in history.ops
            if op.f.value == "discover" and op.type.value == "ok" and op.scan_id is not None
            and op.invoke_index is not None
            and invokes[op.invoke_index].real_ns <= lost_until_ns}
