"""Child processes: started in their own group, stopped with everything they forked."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest

from harness.processes import ChildProcess, StartError, check_port_free, free_port, wait_until
from tests.conftest import alive, descendants

# A parent that forks a child which ignores SIGTERM, then both sleep.
STUBBORN_FAMILY = """
import os, signal, time
if os.fork() == 0:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
time.sleep(60)
"""


def test_stop_reaches_forked_children(run_dir: Path) -> None:
    child = ChildProcess("family", [sys.executable, "-c", STUBBORN_FAMILY],
                         log_path=run_dir / "family.log")
    assert wait_until(lambda: len(descendants(child.pid)) == 1, timeout_s=10)
    family = [child.pid, *descendants(child.pid)]

    child.stop(timeout_s=1.0)

    assert alive(family) == []


def test_missing_binary_is_start_error(run_dir: Path) -> None:
    with pytest.raises(StartError, match="cannot start ghost"):
        ChildProcess("ghost", ["/nonexistent/ghost-binary"], log_path=run_dir / "ghost.log")


def test_wait_until_stops_on_failure() -> None:
    with pytest.raises(StartError, match="it died"):
        wait_until(lambda: False, timeout_s=5, failure=lambda: "it died")


def test_wait_until_times_out() -> None:
    started = time.monotonic()
    assert wait_until(lambda: False, timeout_s=0.1) is False
    assert time.monotonic() - started >= 0.1


def test_free_port_is_free() -> None:
    check_port_free(free_port())
