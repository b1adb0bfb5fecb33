"""The cluster's lifecycle: start, readiness, stop, and what is left behind."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from harness.cluster import Cluster, ClusterConfig, ClusterState, ClusterStateError
from harness.processes import StartError
from tests.conftest import REPO_ROOT, alive

ECHO_APP = "tests.apps.worker_echo:app"


def echo_config(**overrides: object) -> ClusterConfig:
    values: dict[str, object] = {
        "app": ECHO_APP, "workers": 2, "worker_class": "gthread",
        "env": {"PYTHONPATH": str(REPO_ROOT)},
    }
    values.update(overrides)
    return ClusterConfig(**values)  # type: ignore[arg-type]


def test_start_runs_every_worker(run_dir: Path) -> None:
    cluster = Cluster(echo_config(workers=3), run_dir)
    cluster.start()
    try:
        assert cluster.state is ClusterState.RUNNING
        assert len(cluster.worker_pids()) == 3
        assert cluster.base_url.startswith("http://127.0.0.1:")
    finally:
        cluster.stop()


def test_stop_leaves_no_process(run_dir: Path) -> None:
    cluster = Cluster(echo_config(), run_dir)
    cluster.start()
    pids = [cluster.arbiter_pid, *cluster.worker_pids()]

    cluster.stop()

    assert cluster.state is ClusterState.STOPPED
    assert alive([pid for pid in pids if pid is not None]) == []


def test_stop_twice_is_harmless(run_dir: Path) -> None:
    cluster = Cluster(echo_config(), run_dir)
    cluster.start()
    cluster.stop()
    cluster.stop()
    assert cluster.state is ClusterState.STOPPED


def test_start_twice_is_rejected(run_dir: Path) -> None:
    cluster = Cluster(echo_config(), run_dir)
    cluster.start()
    try:
        with pytest.raises(ClusterStateError, match="cannot start a cluster in state running"):
            cluster.start()
    finally:
        cluster.stop()


def test_port_in_use_names_holder(run_dir: Path) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        cluster = Cluster(echo_config(port=port), run_dir)

        with pytest.raises(StartError) as raised:
            cluster.start()

    message = str(raised.value)
    assert f"port {port} on 127.0.0.1 is in use" in message
    assert "pid" in message
    assert cluster.arbiter_pid is None


def test_app_that_cannot_import_reports_log(run_dir: Path) -> None:
    cluster = Cluster(echo_config(app="tests.apps.no_such_module:app"), run_dir)

    with pytest.raises(StartError) as raised:
        cluster.start()

    message = str(raised.value)
    assert "gunicorn exited with code" in message
    assert "no_such_module" in message
    assert cluster.state is ClusterState.FAILED
    assert alive([cluster.arbiter_pid or 0]) == []


def test_unknown_worker_class_is_rejected() -> None:
    with pytest.raises(ValueError, match="unknown worker class 'eventlet'"):
        echo_config(worker_class="eventlet")
