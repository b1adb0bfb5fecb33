"""Pinning a slot again when the replacement worker is slow to serve."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from harness.client import RoutingClient
from harness.cluster import Cluster, ClusterConfig
from harness.history import HistoryRecorder, RunRecord
from harness.processes import wait_until

pytestmark = pytest.mark.e2e

WORKERS = 3
# Longer than the 200 connections of a repin took without pauses on 2 cores (2 to 3 s),
# shorter than the pauses spread them over (about 15 s).
START_DELAY_S = 6.0


def test_repin_waits_for_slow_replacement(tmp_path: Path) -> None:
    flag = tmp_path / "slow-start"
    cluster = Cluster(ClusterConfig(app="tests.apps.slow_start:app", workers=WORKERS, env={
        "SLOW_START_FLAG": str(flag), "SLOW_START_DELAY_S": str(START_DELAY_S),
    }), tmp_path)
    try:
        cluster.start()
        client = RoutingClient(cluster.base_url, HistoryRecorder(RunRecord(seed=0)),
                               token_for=lambda user: "")
        client.pin_workers(WORKERS, is_alive=cluster.check_alive)
        victim = client.worker_pids[1]
        flag.touch()  # the replacement, unlike the first workers, starts late
        os.kill(victim, signal.SIGKILL)
        assert wait_until(lambda: victim not in cluster.worker_pids()
                          and len(cluster.booted_worker_pids()) == WORKERS, timeout_s=20)
        replacement = (set(cluster.booted_worker_pids()) - set(client.worker_pids)).pop()

        # The replacement counts as booted before its lifespan startup ends, so until
        # then every new connection reaches one of the other two workers.
        pinned = client.repin(1, replacement, timeout_s=20)

        assert pinned == replacement
        assert client.worker_pids[1] == replacement
        client.close()
    finally:
        cluster.stop()
