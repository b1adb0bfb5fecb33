"""The command line as a user types it: exit codes, messages, and no process left."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from tests.conftest import alive

pytestmark = pytest.mark.e2e

CLI = [sys.executable, "-m", "harness.cli"]


def run_cli(*args: str, timeout_s: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=timeout_s,
                          env={**os.environ, "COLUMNS": "200"})


def test_unknown_fault_lists_known() -> None:
    result = run_cli("run", "--fault", "no-such-fault")

    assert result.returncode == 3
    assert "unknown fault 'no-such-fault'" in result.stderr
    assert "memory-only-lookup" in result.stderr


def test_unknown_scenario_lists_known() -> None:
    result = run_cli("run", "--scenario", "no-such-scenario")

    assert result.returncode == 3
    assert "unknown scenario 'no-such-scenario'" in result.stderr
    assert "poll-every-worker" in result.stderr


def test_unknown_store_is_rejected() -> None:
    result = run_cli("run", "--store", "memcached")

    assert result.returncode == 3
    assert "unknown store 'memcached'" in result.stderr


def test_usage_error_exits_3() -> None:
    result = run_cli("run", "--workers", "zero")

    assert result.returncode == 3
    assert "--workers" in result.stderr


def test_check_rejects_malformed_history(tmp_path: Path) -> None:
    history = tmp_path / "history.jsonl"
    history.write_text('{"kind": "run", "seed": 1}\n{not json\n', encoding="utf-8")

    result = run_cli("check", str(history))

    assert result.returncode == 3
    assert f"{history}:2: not valid JSON" in result.stderr
    assert history.read_text(encoding="utf-8").startswith('{"kind": "run"')


def test_check_rejudges_recorded_run(tmp_path: Path) -> None:
    out = tmp_path / "run"
    first = run_cli("run", "--seed", "9", "--fault", "read-once-results",
                    "--scenario", "results-twice", "--out", str(out))
    assert first.returncode == 1

    again = run_cli("check", str(out / "history.jsonl"))

    assert again.returncode == 1
    assert "results-after-complete" in again.stdout


def test_lists_show_every_entry() -> None:
    scenarios = run_cli("scenarios")
    faults = run_cli("faults")

    assert scenarios.returncode == 0
    assert "poll-every-worker" in scenarios.stdout
    assert faults.returncode == 0
    assert "read-once-results" in faults.stdout


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_signal_mid_run_leaves_nothing(signum: int, tmp_path: Path) -> None:
    out = tmp_path / "run"
    process = subprocess.Popen([*CLI, "run", "--seed", "2", "--out", str(out)],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    family: set[int] = set()
    deadline = time.monotonic() + 60
    try:
        # Wait until the history has requests in it: the cluster is up and in use.
        while time.monotonic() < deadline:
            family.update(child.pid for child in psutil.Process(process.pid).children(True))
            history = out / "history.jsonl"
            if history.exists() and len(history.read_text().splitlines()) > 20:
                break
            time.sleep(0.05)
        family.update(child.pid for child in psutil.Process(process.pid).children(True))
        assert len(family) >= 6  # the store, the arbiter and four workers

        process.send_signal(signum)
        process.wait(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()

    assert process.returncode in (130, 143)
    assert alive(sorted(family)) == []
    summary = json.loads((out / "summary.json").read_text())
    assert "interrupted" in summary["error"]
