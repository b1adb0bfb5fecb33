"""The detection matrix end to end, on a small slice of faults."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

from harness.processes import wait_until
from tests.conftest import alive

pytestmark = pytest.mark.e2e


def test_small_matrix_catches_and_passes(tmp_path: Path) -> None:
    out = tmp_path / "matrix"

    process = subprocess.run(
        [sys.executable, "-m", "harness.cli", "matrix", "--seeds", "1", "--fault",
         "read-once-results", "--fault", "no-owner-check", "--out", str(out)],
        capture_output=True, text=True, timeout=600)

    assert process.returncode == 0, process.stdout[-3000:]
    data = json.loads((out / "matrix.json").read_text())
    rows = {row["variant"]: row for row in data["faults"]}
    assert rows["read-once-results"]["detections"] == 1
    assert rows["no-owner-check"]["detections"] == 1
    assert "cross-user-read" in rows["no-owner-check"]["caught_by"]
    assert rows["no-owner-check"]["baseline_seeds"] == 1
    assert data["correct"]["detections"] == 0
    assert (out / "matrix.md").read_text().startswith("# Detection matrix")


def test_unknown_fault_exits_3(tmp_path: Path) -> None:
    process = subprocess.run(
        [sys.executable, "-m", "harness.cli", "matrix", "--fault", "no-such-fault",
         "--out", str(tmp_path / "matrix")], capture_output=True, text=True, timeout=60)

    assert process.returncode == 3
    assert "unknown fault 'no-such-fault'" in process.stderr


def test_sigterm_stops_every_run(tmp_path: Path) -> None:
    out = tmp_path / "matrix"
    process = subprocess.Popen(
        [sys.executable, "-m", "harness.cli", "matrix", "--seeds", "1", "--fault",
         "no-owner-check", "--no-baseline", "--out", str(out)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    family: set[int] = set()
    try:
        def runs_started() -> bool:
            family.update(child.pid for child in psutil.Process(process.pid).children(True))
            return len(list(out.glob("runs/*/history.jsonl"))) >= 1

        assert wait_until(runs_started, timeout_s=60)
        family.update(child.pid for child in psutil.Process(process.pid).children(True))

        process.send_signal(signal.SIGTERM)
        process.wait(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()

    assert process.returncode == 143
    assert wait_until(lambda: alive(sorted(family)) == [], timeout_s=30)
