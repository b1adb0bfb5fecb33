"""The nemesis on real workers and a real store: each action takes effect, then ends.

One cluster of the reference service for the module, behind a store proxy. Each test
probes the effect of one action through the routing client: a dead, replaced or paused
worker, or a slow, failing or restarted store. Then it shows that the action ended, and
checks the window the action recorded.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from harness.client import Answer, RoutingClient
from harness.cluster import Cluster, ClusterConfig
from harness.history import HistoryRecorder, NemesisWindow, RunRecord
from harness.nemesis import Nemesis, NemesisError
from harness.processes import wait_until
from harness.store import EmbeddedStore
from harness.store_proxy import StoreProxy
from service_under_test.auth import mint_token
from tests.conftest import alive

pytestmark = pytest.mark.e2e

SECRET = "nemesis-test-secret"
WORKERS = 3
RETRY_BUDGET_S = 0.4
SLOW_STORE_LATENCY_S = 0.1


@pytest.fixture(scope="module")
def rig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Cluster, EmbeddedStore,
                                                                   StoreProxy, Path]]:
    run_dir = tmp_path_factory.mktemp("nemesis")
    store = EmbeddedStore(key_prefix="nemesis-test:")
    store.start(run_dir)
    proxy = StoreProxy((store.host, store.port))
    proxy.start()
    cluster = Cluster(ClusterConfig(workers=WORKERS, env={
        "SCAN_SERVICE_REDIS_URL": proxy.url,
        "SCAN_SERVICE_KEY_PREFIX": store.key_prefix,
        "SCAN_SERVICE_TOKEN_SECRET": SECRET,
        "SCAN_SERVICE_STRATEGY_DURATION_S": "0.05",
        "SCAN_SERVICE_STORE_RETRY_BUDGET_S": str(RETRY_BUDGET_S),
    }), run_dir)
    try:
        cluster.start()
        yield cluster, store, proxy, run_dir
    finally:
        cluster.stop()
        proxy.stop()
        store.stop()


@pytest.fixture
def recorder() -> HistoryRecorder:
    return HistoryRecorder(RunRecord(seed=0))


@pytest.fixture
def client(rig: tuple[Cluster, EmbeddedStore, StoreProxy, Path],
           recorder: HistoryRecorder) -> Iterator[RoutingClient]:
    cluster = rig[0]
    routing = RoutingClient(cluster.base_url, recorder,
                            token_for=lambda user: mint_token(SECRET, user), timeout_s=1.0)
    routing.pin_workers(WORKERS)
    yield routing
    routing.close()


@pytest.fixture
def nemesis(rig: tuple[Cluster, EmbeddedStore, StoreProxy, Path], client: RoutingClient,
            recorder: HistoryRecorder) -> Iterator[Nemesis]:
    cluster, store, proxy, run_dir = rig
    chaos = Nemesis(cluster=cluster, client=client, recorder=recorder, store=store,
                    proxy=proxy, run_dir=run_dir)
    chaos.scenario = "nemesis-test"
    yield chaos
    chaos.heal()


def start_scan(client: RoutingClient, route: int = 0) -> str:
    accepted = client.discover("alice", route=route)
    assert accepted.scan_id is not None, accepted.body
    return accepted.scan_id


def wait_terminal(client: RoutingClient, scan_id: str, timeout_s: float = 10.0) -> Answer:
    answers: list[Answer] = []

    def terminal() -> bool:
        answers.append(client.status("alice", scan_id))
        return answers[-1].status in ("complete", "failed")

    assert wait_until(terminal, timeout_s=timeout_s, interval_s=0.02), answers[-1].body
    return answers[-1]


def timed_status(client: RoutingClient, scan_id: str, worker: int = 0) -> tuple[Answer, float]:
    started = time.monotonic()
    answer = client.status("alice", scan_id, route=worker)
    return answer, time.monotonic() - started


def only_window(recorder: HistoryRecorder) -> NemesisWindow:
    windows = recorder.history.nemesis_windows
    assert len(windows) == 1, windows
    return windows[0]


# Workers


def test_kill_replaces_and_repins(nemesis: Nemesis, client: RoutingClient,
                                  recorder: HistoryRecorder) -> None:
    old_pids = client.worker_pids
    scan_id = start_scan(client, route=1)

    new_pid = nemesis.kill_worker(1)
    answer = client.status("alice", scan_id, route=1)

    assert alive([old_pids[1]]) == []
    assert new_pid is not None and new_pid not in old_pids
    assert client.worker_pids == [old_pids[0], new_pid, old_pids[2]]
    assert answer.worker == 1
    assert answer.op.worker_pid == new_pid
    assert answer.status == "scanning"
    window = only_window(recorder)
    assert (window.action, window.target) == ("kill-worker", "worker 1")
    assert window.options == {"pid": old_pids[1], "signal": "SIGKILL",
                              "replacement_pid": new_pid}
    assert window.real_start_ns < window.real_end_ns < recorder.real_ns()
    assert window.scenario == "nemesis-test"
    assert not window.data_lost


def test_recycle_runs_graceful_shutdown(
        rig: tuple[Cluster, EmbeddedStore, StoreProxy, Path], nemesis: Nemesis,
        client: RoutingClient, recorder: HistoryRecorder) -> None:
    proxy = rig[2]
    old_pid = client.worker_pids[2]
    scan_id = start_scan(client, route=2)

    # Slow store writes stretch the 0.7 s scan to over 2 s, so that it still runs when the
    # worker's graceful shutdown comes on a busy machine. The latency stays below the
    # workers' store timeout (half of RETRY_BUDGET_S), so the writes still succeed.
    proxy.set_latency(SLOW_STORE_LATENCY_S)
    try:
        new_pid = nemesis.recycle_worker(2)
    finally:
        proxy.set_latency(0.0)
    after = wait_terminal(client, scan_id)

    assert alive([old_pid]) == []
    assert client.worker_pids[2] == new_pid
    # The app's shutdown marks the scans it had to stop failed.
    assert after.status == "failed"
    assert only_window(recorder).options["signal"] == "SIGTERM"


def test_kill_without_wait_pinned_later(nemesis: Nemesis, client: RoutingClient,
                                        recorder: HistoryRecorder) -> None:
    old_pid = client.worker_pids[0]

    assert nemesis.kill_worker(0, wait=False) is None
    assert recorder.history.nemesis_windows == []
    replaced = nemesis.await_replacements()

    assert replaced == {0: client.worker_pids[0]}
    assert client.worker_pids[0] != old_pid
    assert client.status("alice", "0" * 32, route=0).op.worker_pid == replaced[0]
    assert len(recorder.history.nemesis_windows) == 1


def test_pause_stops_and_resumes(nemesis: Nemesis, client: RoutingClient,
                                 recorder: HistoryRecorder) -> None:
    pid = client.worker_pids[1]
    scan_id = start_scan(client, route=0)

    with nemesis.paused_worker(1):
        status_while_paused = psutil.Process(pid).status()
        unanswered = client.status("alice", scan_id, route=1)
        elsewhere = client.status("alice", scan_id, route=2)
    answered = client.status("alice", scan_id, route=1)

    assert status_while_paused == psutil.STATUS_STOPPED
    assert unanswered.http_status is None
    assert unanswered.op.type.value == "info"
    assert elsewhere.http_status == 200
    assert psutil.Process(pid).status() != psutil.STATUS_STOPPED
    assert answered.op.worker_pid == pid
    assert answered.http_status == 200
    assert only_window(recorder).action == "pause-worker"


def test_pause_twice_rejected(nemesis: Nemesis) -> None:
    nemesis.pause_worker(0)

    with pytest.raises(NemesisError, match="worker 0 is already paused"):
        nemesis.pause_worker(0)
    nemesis.resume_worker(0)


def test_unknown_worker_rejected(nemesis: Nemesis) -> None:
    with pytest.raises(NemesisError, match="worker 7 does not exist: workers are 0 to 2"):
        nemesis.kill_worker(7)


# Store traffic


def test_latency_slows_reads_then_ends(nemesis: Nemesis, client: RoutingClient,
                                       recorder: HistoryRecorder) -> None:
    scan_id = start_scan(client)
    client.status("alice", scan_id, route=0)  # the worker's store connection is open

    with nemesis.store_latency(0.15):
        slow, slow_s = timed_status(client, scan_id)
    # The fastest of three, so that one read delayed by a busy machine does not count.
    fast_reads = [timed_status(client, scan_id) for _ in range(3)]
    fast_s = min(elapsed_s for _, elapsed_s in fast_reads)

    assert slow.http_status == 200
    assert slow_s >= 0.15
    assert all(answer.http_status == 200 for answer, _ in fast_reads)
    assert fast_s < 0.15
    assert only_window(recorder).options == {"latency_s": 0.15}


def test_store_errors_503_then_end(nemesis: Nemesis, client: RoutingClient,
                                   recorder: HistoryRecorder) -> None:
    scan_id = start_scan(client)

    with nemesis.store_errors(["EVALSHA"]):
        failing = client.status("alice", scan_id, route=1)
    after = client.status("alice", scan_id, route=1)

    assert failing.http_status == 503
    assert after.http_status == 200
    window = only_window(recorder)
    assert window.action == "store-errors"
    assert window.options["commands"] == ["EVALSHA"]


def test_store_errors_need_command(nemesis: Nemesis) -> None:
    with pytest.raises(NemesisError, match="at least one command name"), \
            nemesis.store_errors([]):
        pass


def test_store_hang_503_then_end(nemesis: Nemesis, client: RoutingClient) -> None:
    scan_id = start_scan(client)

    with nemesis.store_hang():
        hung, hung_s = timed_status(client, scan_id, worker=2)
    after = client.status("alice", scan_id, route=2)

    assert hung.http_status == 503
    assert RETRY_BUDGET_S / 2 <= hung_s < 1.0
    assert after.http_status == 200


def test_store_outage_503_then_end(nemesis: Nemesis, client: RoutingClient) -> None:
    scan_id = start_scan(client)

    with nemesis.store_outage():
        during = client.results("alice", scan_id, route=0)
    complete = wait_terminal(client, scan_id)

    assert during.http_status == 503
    assert complete.status == "complete"


def test_timed_outage_ends_itself(nemesis: Nemesis, client: RoutingClient,
                                  recorder: HistoryRecorder,
                                  rig: tuple[Cluster, EmbeddedStore, StoreProxy, Path]) -> None:
    proxy = rig[2]
    scan_id = start_scan(client)

    outage = nemesis.for_seconds(0.2, nemesis.store_outage())
    during = proxy.rules.outage
    # The read retries through the outage and succeeds once it ends.
    answer = client.status("alice", scan_id, route=1)
    outage.wait()

    assert during is True
    assert proxy.rules.outage is False
    assert answer.http_status == 200
    window = only_window(recorder)
    assert window.real_end_ns - window.real_start_ns >= 200_000_000


def test_reset_reaches_pooled_connections(nemesis: Nemesis, client: RoutingClient,
                                          recorder: HistoryRecorder) -> None:
    scan_id = start_scan(client)
    for worker in range(WORKERS):
        client.status("alice", scan_id, route=worker)

    reset = nemesis.reset_store_connections()
    after = client.status("alice", scan_id, route=0)

    assert reset >= WORKERS
    assert after.http_status == 200
    assert only_window(recorder).options == {"connections": reset}


def test_cut_reply_retried_exactly(nemesis: Nemesis, client: RoutingClient,
                                   recorder: HistoryRecorder) -> None:
    with nemesis.reset_after_reply("EVALSHA", count=2, arg_contains=b":done:"):
        scan_id = start_scan(client)
        complete = wait_terminal(client, scan_id)
    results = client.results("alice", scan_id)

    assert complete.status == "complete"
    assert complete.body is not None
    assert complete.body["progress"]["strategies_completed"] == 14
    assert results.body is not None
    assert len({entry["strategy_id"] for entry in results.body["results"]}) == 14
    assert only_window(recorder).options["cut"] == 2


def test_store_actions_need_proxy(rig: tuple[Cluster, EmbeddedStore, StoreProxy, Path],
                                  client: RoutingClient, recorder: HistoryRecorder) -> None:
    cluster, store, _, run_dir = rig
    direct = Nemesis(cluster=cluster, client=client, recorder=recorder, store=store,
                     run_dir=run_dir)

    with pytest.raises(NemesisError, match="needs the store proxy"), \
            direct.store_latency(0.1):
        pass


# Store data


def test_restart_keeps_data(nemesis: Nemesis, client: RoutingClient,
                            recorder: HistoryRecorder,
                            rig: tuple[Cluster, EmbeddedStore, StoreProxy, Path]) -> None:
    store = rig[1]
    scan_id = start_scan(client)
    wait_terminal(client, scan_id)
    old_port = store.port

    nemesis.restart_store(keep_data=True)
    after = client.status("alice", scan_id, route=1)

    assert store.port != old_port
    assert after.status == "complete"
    window = only_window(recorder)
    assert window.action == "restart-store"
    assert window.options["keys"] >= 4
    assert not window.data_lost


def test_restart_losing_data(nemesis: Nemesis, client: RoutingClient,
                             recorder: HistoryRecorder) -> None:
    scan_id = start_scan(client)
    wait_terminal(client, scan_id)

    nemesis.restart_store(keep_data=False)
    gone = client.status("alice", scan_id, route=2)
    fresh = wait_terminal(client, start_scan(client, route=2))

    assert gone.status == "not_found"
    assert fresh.status == "complete"
    window = only_window(recorder)
    assert window.action == "restart-store-losing-data"
    assert window.data_lost


def test_flush_deletes_run_keys(nemesis: Nemesis, client: RoutingClient,
                                recorder: HistoryRecorder) -> None:
    scan_id = start_scan(client)
    wait_terminal(client, scan_id)

    deleted = nemesis.flush_store()
    gone = client.status("alice", scan_id, route=0)

    assert deleted >= 4
    assert gone.status == "not_found"
    assert only_window(recorder).data_lost


def test_heal_ends_every_action(nemesis: Nemesis, client: RoutingClient,
                                recorder: HistoryRecorder,
                                rig: tuple[Cluster, EmbeddedStore, StoreProxy, Path]) -> None:
    proxy = rig[2]
    paused_pid = client.worker_pids[0]
    nemesis.pause_worker(0)
    nemesis.for_seconds(60, nemesis.store_latency(0.5))
    nemesis.kill_worker(2, wait=False)

    nemesis.heal()

    assert psutil.Process(paused_pid).status() != psutil.STATUS_STOPPED
    assert proxy.rules.latency_s == 0
    assert all(alive([pid]) for pid in client.worker_pids)
    assert sorted(window.action for window in recorder.history.nemesis_windows) == [
        "kill-worker", "pause-worker", "store-latency"]
