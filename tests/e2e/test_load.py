"""Locust load end to end: verdicts, thresholds, bad input, and no process left behind."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest

from harness.history import read_history
from harness.load import LOCUSTFILE
from harness.load.runner import LoadConfig, LoadOutcome, execute_load
from harness.runner import ExitCode, RunConfig, execute, running_cluster
from tests.conftest import alive

pytestmark = pytest.mark.e2e

CLI = [sys.executable, "-m", "harness.cli"]

# Each fault and the invariant that must catch it under load.
EXPECTED_INVARIANT = {
    "racy-progress-counter": "complete-is-whole",
    "stale-worker-snapshot": "monotonic-reads",
    "late-placeholder": "known-scan-found",
}


@dataclass
class CliRun:
    returncode: int
    stdout: str
    stderr: str
    commands: dict[int, str]
    """The command line of every descendant of the command, by pid, seen while it ran."""


def run_cli(*args: str, timeout_s: float = 120) -> CliRun:
    """Run the command line and note its descendants while it runs."""
    process = subprocess.Popen([*CLI, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True, env={**os.environ, "COLUMNS": "200"})
    commands: dict[int, str] = {}
    deadline = time.monotonic() + timeout_s
    try:
        while process.poll() is None and time.monotonic() < deadline:
            with contextlib.suppress(psutil.NoSuchProcess):
                for child in psutil.Process(process.pid).children(recursive=True):
                    if child.pid not in commands:
                        with contextlib.suppress(psutil.Error):
                            commands[child.pid] = " ".join(child.cmdline())
            time.sleep(0.1)
        stdout, stderr = process.communicate(timeout=max(1.0, deadline - time.monotonic()))
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    return CliRun(process.returncode, stdout, stderr, commands)


def caught_by(outcome: LoadOutcome) -> set[str]:
    assert outcome.run.result is not None
    return {violation.invariant for violation in outcome.run.result.violations}


@pytest.mark.slow
def test_correct_service_passes_minute(tmp_path: Path) -> None:
    # A spawned redis-server, because 50 users can saturate the embedded store, a Python
    # server sharing 2 cores with the workers and Locust, until the service's store
    # calls time out and it answers 503: a property of the test bed, not of the service.
    outcome = execute_load(LoadConfig(users=50, spawn_rate=10, run_time="60s", workers=4,
                                      store="redis-server", seed=21, out=tmp_path / "run"))

    summary = json.loads((tmp_path / "run" / "summary.json").read_text(encoding="utf-8"))
    assert outcome.exit_code == ExitCode.PASS, summary["violations"][:3]
    assert summary["verdict"] == "pass"
    assert summary["counts"]["scans"] > 100
    assert sorted(summary["counts"]["by_worker"]) == ["0", "1", "2", "3"]
    assert outcome.stats is not None
    assert outcome.stats.total.requests > 1000
    assert outcome.stats.total.failures == 0
    assert alive(list(outcome.locust_pids)) == []


@pytest.mark.parametrize("fault", sorted(EXPECTED_INVARIANT))
def test_fault_is_caught(fault: str, tmp_path: Path) -> None:
    outcome = execute_load(LoadConfig(users=20, spawn_rate=20, run_time="6s", faults=(fault,),
                                      seed=22, out=tmp_path / "run"))

    assert outcome.exit_code == ExitCode.VIOLATION
    assert EXPECTED_INVARIANT[fault] in caught_by(outcome)
    assert alive(list(outcome.locust_pids)) == []


def test_impossible_rps_exits_2(tmp_path: Path) -> None:
    # Two Locust worker processes: also checks that their histories merge into one.
    out = tmp_path / "run"

    result = run_cli("load", "--users", "10", "--spawn-rate", "10", "--run-time", "4s",
                     "--processes", "2", "--min-rps", "1000000", "--seed", "23",
                     "--out", str(out))

    locust = [pid for pid, command in result.commands.items() if "-m locust" in command]
    assert result.returncode == ExitCode.THRESHOLD, result.stdout + result.stderr
    assert "--min-rps: measured" in result.stdout
    assert "required >= 1000000: missed" in result.stdout
    assert "verdict: pass (exit 2)" in result.stdout
    assert len(locust) >= 3  # the master and two workers
    assert alive(sorted(result.commands)) == []

    files = sorted((out / "load-history").glob("*.jsonl"))
    history = read_history(out / "history.jsonl")
    owners = {op.process // 1_000_000 for op in history.ops}
    assert len(files) == 2
    assert len(owners) == 2
    assert [op.index for op in history.ops] == list(range(len(history.ops)))
    assert [op.real_ns for op in history.ops] == sorted(op.real_ns for op in history.ops)


@pytest.fixture
def busy_port() -> Iterator[int]:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        yield listener.getsockname()[1]


@pytest.mark.parametrize(("args", "message"), [
    (["--fault", "no-such-fault"], "unknown fault 'no-such-fault'"),
    (["--run-time", "10x"], "--run-time: invalid run time '10x': use seconds (30) or a span"),
    (["--url", "http://127.0.0.1:9"], "--url needs --token-secret"),
    (["--url", "http://127.0.0.1:9", "--token-secret", "s", "--fault", "late-placeholder"],
     "--url names a running cluster, so --fault cannot be used with it"),
    (["--url", "http://127.0.0.1:9", "--app", "tests.apps.jobs_app:app"],
     "--url names a running cluster, so --app cannot be used with it"),
    # Refused before any request goes out: the address is never contacted.
    (["--url", "http://192.0.2.1:8000", "--token-secret", "s"],
     "is not on loopback; the harness sends requests only to this machine unless you add "
     "--allow-remote (and explicit caps on the load: --users and --run-time)"),
    (["--url", "http://192.0.2.1:8000", "--allow-remote", "--token-secret", "s"],
     "--allow-remote needs explicit caps on load: give --users N and --run-time S"),
    (["--profile", "no-such-profile.toml"], "profile no-such-profile.toml not found"),
])
def test_bad_input_exits_3(args: list[str], message: str, tmp_path: Path) -> None:
    result = run_cli("load", "--run-time", "3s", *args, "--out", str(tmp_path / "run"))

    assert result.returncode == ExitCode.HARNESS_ERROR
    assert message in result.stderr + result.stdout
    assert alive(sorted(result.commands)) == []


def test_port_in_use_exits_3(busy_port: int, tmp_path: Path) -> None:
    result = run_cli("load", "--run-time", "3s", "--port", str(busy_port),
                     "--out", str(tmp_path / "run"))

    assert result.returncode == ExitCode.HARNESS_ERROR
    assert f"port {busy_port} on 127.0.0.1 is in use" in result.stdout
    assert alive(sorted(result.commands)) == []


def test_unreachable_url_exits_3(tmp_path: Path) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]

    result = run_cli("load", "--run-time", "3s", "--url", f"http://127.0.0.1:{closed_port}",
                     "--token-secret", "s", "--out", str(tmp_path / "run"))

    assert result.returncode == ExitCode.HARNESS_ERROR
    assert f"cannot reach --url http://127.0.0.1:{closed_port}" in result.stdout


def test_run_ends_with_load_phase(tmp_path: Path) -> None:
    outcome = execute(RunConfig(seed=25, scenarios=("results-twice",), load_seconds=3,
                                out=tmp_path / "run"))

    assert outcome.history is not None
    by_scenario = {scenario.name: scenario for scenario in outcome.scenarios}
    load_ops = [op for op in outcome.history.ops if op.scenario == "load"]
    assert outcome.exit_code == ExitCode.PASS
    assert list(by_scenario) == ["results-twice", "load"]
    assert by_scenario["load"].verdict.value == "pass"
    assert by_scenario["load"].ops == len(load_ops) > 0
    assert {op.worker for op in load_ops if op.worker_pid is not None} <= {0, 1, 2, 3}
    assert [op.index for op in outcome.history.ops] == list(range(len(outcome.history.ops)))


def test_plain_locust_run_is_judged(tmp_path: Path, repo_env: dict[str, str]) -> None:
    secret = "plain-locust-secret"
    history_dir = tmp_path / "load-history"
    config = RunConfig(seed=26, workers=2)
    with running_cluster(config, tmp_path, 26, "plain", secret) as (_, cluster):
        env = {**repo_env, "SCAN_LOAD_TOKEN_SECRET": secret,
               "SCAN_LOAD_HISTORY_DIR": str(history_dir)}
        locust = subprocess.run(
            [sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--headless",
             "--host", cluster.base_url, "-u", "4", "-r", "4", "-t", "3s", "--only-summary"],
            capture_output=True, text=True, env=env, timeout=60)
        worker_pids = [str(pid) for pid in sorted(cluster.worker_pids())]

    merged = tmp_path / "history.jsonl"
    merge = run_cli("merge-history", *[arg for pid in worker_pids
                                       for arg in ("--worker-pid", pid)],
                    str(merged), *map(str, sorted(history_dir.glob("*.jsonl"))))
    check = run_cli("check", str(merged))

    assert locust.returncode == 0, locust.stderr[-2000:]
    assert "/api/v1/opportunities/status/{job_id}" in locust.stderr
    assert merge.returncode == 0, merge.stderr
    assert f"into {merged}" in merge.stdout
    assert check.returncode == 0, check.stdout
    assert "verdict: pass" in check.stdout


def test_missing_secret_stops_locust(tmp_path: Path) -> None:
    env = {key: value for key, value in os.environ.items()
           if not key.startswith("SCAN_LOAD_")}

    locust = subprocess.run(
        [sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--headless",
         "--host", "http://127.0.0.1:9", "-u", "1", "-t", "1s"],
        capture_output=True, text=True, env=env, timeout=60, cwd=tmp_path)

    assert locust.returncode != 0
    assert "SCAN_LOAD_TOKEN_SECRET is not set" in locust.stderr


def test_signal_during_load_leaves_nothing(tmp_path: Path) -> None:
    out = tmp_path / "run"
    process = subprocess.Popen([*CLI, "run", "--scenario", "results-twice", "--load-seconds",
                                "30", "--seed", "27", "--out", str(out)],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    family: dict[int, str] = {}
    deadline = time.monotonic() + 90
    try:
        # Wait until Locust's users have recorded ops: the load phase is under way.
        while time.monotonic() < deadline and not list(out.glob("load-history/*.jsonl")):
            with contextlib.suppress(psutil.Error):
                for child in psutil.Process(process.pid).children(recursive=True):
                    family.setdefault(child.pid, " ".join(child.cmdline()))
            time.sleep(0.05)
        with contextlib.suppress(psutil.Error):
            for child in psutil.Process(process.pid).children(recursive=True):
                family.setdefault(child.pid, " ".join(child.cmdline()))

        process.terminate()
        process.wait(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()

    assert any("-m locust" in command for command in family.values())
    assert process.returncode == 143
    assert alive(sorted(family)) == []
