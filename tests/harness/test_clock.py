"""Virtual time: the clock file, and every worker and store following it."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from harness.client import RoutingClient
from harness.clock import ClockError, VirtualClock
from harness.clock_state import (
    CLOCK_DRIVER_ENV,
    CLOCK_FILE_ENV,
    ClockState,
    read_state,
    real_time_ns,
    write_state,
)
from harness.cluster import Cluster, ClusterConfig
from harness.history import Function, HistoryRecorder, OpType, RunRecord
from harness.processes import StartError, wait_until
from harness.store import (
    EmbeddedStore,
    ExternalStore,
    RedisServerStore,
    faketime_environment,
    faketime_spec,
)
from tests.conftest import REPO_ROOT

HOUR_S = 3600.0
WORKERS = 2

APPS = {"uvicorn": "tests.apps.clock_probe:asgi_app", "gthread": "tests.apps.clock_probe:wsgi_app"}


# The clock file and its state


def test_real_clock_until_first_move(tmp_path: Path) -> None:
    clock = VirtualClock(tmp_path / "clock.json", stale_s=30)

    assert read_state(tmp_path / "clock.json").is_real
    assert abs(clock.now_ns() - real_time_ns()) < 50_000_000


def test_frozen_clock_stands_still(tmp_path: Path) -> None:
    clock = VirtualClock(tmp_path / "clock.json", stale_s=30)

    clock.freeze(at_s=2_000_000_000.7)
    first = clock.now_s()
    time.sleep(0.05)  # the passing of real time is the subject

    assert first == 2_000_000_000.0
    assert clock.now_s() == first


def test_ticking_clock_keeps_pace(tmp_path: Path) -> None:
    clock = VirtualClock(tmp_path / "clock.json", stale_s=30)

    clock.tick(from_s=2_000_000_000.0)
    time.sleep(0.1)  # the passing of real time is the subject

    assert 2_000_000_000.1 <= clock.now_s() < 2_000_000_001.0


def test_advance_keeps_mode(tmp_path: Path) -> None:
    clock = VirtualClock(tmp_path / "clock.json", stale_s=30)
    clock.freeze(at_s=2_000_000_000.0)

    clock.advance(HOUR_S)

    assert clock.state.frozen
    assert clock.now_s() == 2_000_000_000.0 + HOUR_S
    assert clock.state.seq == 2


def test_negative_advance_is_rejected(tmp_path: Path) -> None:
    clock = VirtualClock(tmp_path / "clock.json", stale_s=30)

    with pytest.raises(ClockError, match="use move_to\\(\\) to go back in time"):
        clock.advance(-5)


def test_long_jump_with_open_scan_is_rejected(tmp_path: Path) -> None:
    recorder = HistoryRecorder(RunRecord(seed=0))
    recorder.record(type=OpType.OK, f=Function.DISCOVER, process=1, real_ns=0, virtual_ns=0,
                    scan_id="s1", invoke_index=0)
    clock = VirtualClock(tmp_path / "clock.json", stale_s=30, recorder=recorder)

    with pytest.raises(ClockError) as raised:
        clock.advance(31)

    assert "longer than stale_s (30 s) while 1 scan(s) are open (s1)" in str(raised.value)
    assert "simulates_dead_worker=True" in str(raised.value)
    assert clock.state.seq == 0


def test_long_jump_simulating_dead_worker(tmp_path: Path) -> None:
    recorder = HistoryRecorder(RunRecord(seed=0))
    recorder.record(type=OpType.OK, f=Function.DISCOVER, process=1, real_ns=0, virtual_ns=0,
                    scan_id="s1", invoke_index=0)
    clock = VirtualClock(tmp_path / "clock.json", stale_s=30, recorder=recorder)

    clock.advance(31, simulates_dead_worker=True)

    move = recorder.history.clock_moves[0]
    assert move.simulates_dead_worker
    assert move.to_virtual_ns - move.from_virtual_ns >= 31 * 10**9


def test_moves_are_recorded(tmp_path: Path) -> None:
    recorder = HistoryRecorder(RunRecord(seed=0), tmp_path / "history.jsonl")
    clock = VirtualClock(tmp_path / "clock.json", stale_s=30, recorder=recorder)

    clock.freeze(at_s=2_000_000_000.0, scenario="demo")
    clock.advance(10, scenario="demo")
    recorder.close()

    lines = [json.loads(line) for line in (tmp_path / "history.jsonl").read_text().splitlines()]
    actions = [line["action"] for line in lines if line["kind"] == "clock"]
    assert actions == ["freeze", "advance"]
    assert lines[2]["to_virtual_ns"] == (2_000_000_000 + 10) * 10**9


# libfaketime


def test_faketime_spec_by_mode() -> None:
    frozen = ClockState(seq=1, virtual_ns=2_000_000_000_900_000_000, frozen=True)
    ticking = ClockState(seq=1, virtual_ns=real_time_ns() + 3600 * 10**9, frozen=False,
                         ref_monotonic_ns=time.clock_gettime_ns(time.CLOCK_MONOTONIC))

    assert faketime_spec(ClockState()) == "+0"
    assert faketime_spec(frozen) == "2000000000"
    assert 3599.9 < float(faketime_spec(ticking)) < 3600.1


def test_missing_libfaketime_says_how_to_install(monkeypatch: pytest.MonkeyPatch,
                                                 tmp_path: Path) -> None:
    monkeypatch.setattr("harness.store.FAKETIME_LIBRARY_GLOB", str(tmp_path / "none/*.so.1"))

    with pytest.raises(StartError, match="apt-get install libfaketime"):
        faketime_environment(tmp_path / "faketime")


# Stores following the clock


def store_time_s(url: str) -> float:
    client = redis.Redis.from_url(url)
    try:
        seconds, microseconds = client.time()
        return seconds + microseconds / 1e6
    finally:
        client.close()


@pytest.mark.parametrize("store_class", [EmbeddedStore, RedisServerStore])
def test_store_follows_jump_and_expires(store_class: type, run_dir: Path) -> None:
    clock_file = run_dir / "clock.json"
    store = store_class(key_prefix="t:")
    clock = VirtualClock(clock_file, stale_s=30, store=store)
    store.start(run_dir, clock_file)
    try:
        client = redis.Redis.from_url(store.url)
        client.set("t:short", "x", ex=60)
        client.set("t:long", "x", ex=2 * int(HOUR_S))

        clock.advance(HOUR_S)

        assert abs(store_time_s(store.url) - clock.now_s()) < 1.0
        assert client.get("t:short") is None
        assert client.get("t:long") == b"x"
        client.close()
    finally:
        store.stop()


@pytest.mark.parametrize("store_class", [EmbeddedStore, RedisServerStore])
def test_frozen_store_keeps_keys(store_class: type, run_dir: Path) -> None:
    clock_file = run_dir / "clock.json"
    store = store_class(key_prefix="t:")
    clock = VirtualClock(clock_file, stale_s=30, store=store)
    store.start(run_dir, clock_file)
    try:
        clock.freeze()
        client = redis.Redis.from_url(store.url)
        client.set("t:key", "x", px=300)
        time.sleep(0.6)  # real time passing while virtual time stands is the subject

        assert client.get("t:key") == b"x"
        clock.advance(1)
        assert client.get("t:key") is None
        client.close()
    finally:
        store.stop()


def test_url_store_shifts_ttls_of_own_keys(run_dir: Path) -> None:
    server = RedisServerStore(key_prefix="unused:")
    server.start(run_dir)
    try:
        client = redis.Redis.from_url(server.url)
        client.set("run:a", "x", ex=60)
        client.set("run:b", "x", ex=7200)
        client.set("other:a", "x", ex=60)
        store = ExternalStore(external_url=server.url, key_prefix="run:")
        clock = VirtualClock(run_dir / "clock.json", stale_s=30, store=store)

        clock.advance(HOUR_S)

        assert client.get("run:a") is None
        assert 3500 < client.ttl("run:b") <= 3600
        assert client.get("other:a") == b"x"
        assert 50 < client.ttl("other:a") <= 60
        client.close()
    finally:
        server.stop()


def test_url_store_rejects_freeze(run_dir: Path) -> None:
    store = ExternalStore(external_url="redis://127.0.0.1:1/0", key_prefix="run:")
    clock = VirtualClock(run_dir / "clock.json", stale_s=30, store=store)

    with pytest.raises(ClockError, match="cannot be frozen"):
        clock.freeze()
    assert clock.state.seq == 0


def test_url_store_rejects_going_back(run_dir: Path) -> None:
    store = ExternalStore(external_url="redis://127.0.0.1:1/0", key_prefix="run:")
    clock = VirtualClock(run_dir / "clock.json", stale_s=30, store=store)

    with pytest.raises(ClockError, match="virtual time cannot go back"):
        clock.move_to(clock.now_s() - 60)


# Workers following the clock


class ProbeCluster:
    def __init__(self, cluster: Cluster, client: RoutingClient, clock: VirtualClock,
                 store: EmbeddedStore) -> None:
        self.cluster = cluster
        self.client = client
        self.clock = clock
        self.store = store

    def readings(self, worker: int) -> dict[str, float]:
        connection = self.client._connections[worker]
        with connection.lock:
            return connection.http.get("/").json()


@pytest.fixture
def probe_cluster(request: pytest.FixtureRequest, run_dir: Path) -> Iterator[ProbeCluster]:
    worker_class, driver, timeout_s = request.param
    clock_file = run_dir / "clock.json"
    write_state(clock_file, ClockState())
    store = EmbeddedStore(key_prefix="t:")
    store.start(run_dir, clock_file)
    cluster = Cluster(ClusterConfig(
        app=APPS[worker_class], workers=WORKERS, worker_class=worker_class,
        worker_timeout_s=timeout_s,
        env={"PYTHONPATH": str(REPO_ROOT), CLOCK_FILE_ENV: str(clock_file),
             CLOCK_DRIVER_ENV: driver}), run_dir)
    client = RoutingClient("", HistoryRecorder(RunRecord(seed=0)), token_for=lambda user: "")
    try:
        cluster.start()
        client.base_url = cluster.base_url
        client.pin_workers(WORKERS, probe_path="/")
        clock = VirtualClock(clock_file, stale_s=30, store=store,
                             sync_workers=lambda seq: client.sync_clock(seq, probe_path="/"))
        yield ProbeCluster(cluster, client, clock, store)
    finally:
        client.close()
        cluster.stop()
        store.stop()


COMBINATIONS = [(worker_class, driver, 30) for worker_class in ("uvicorn", "gthread")
                for driver in ("time-machine", "freezegun")]


@pytest.mark.e2e
@pytest.mark.parametrize("probe_cluster", COMBINATIONS, indirect=True,
                         ids=[f"{c}-{d}" for c, d, _ in COMBINATIONS])
def test_everyone_agrees_after_hour_jump(probe_cluster: ProbeCluster) -> None:
    clock = probe_cluster.clock
    clock.advance(HOUR_S)
    background = ["thread", "task"] if probe_cluster.cluster.config.worker_class == "uvicorn" \
        else ["thread"]

    for worker in range(WORKERS):
        readings = probe_cluster.readings(worker)
        now_s = clock.now_s()
        assert abs(readings["handler"] - now_s) < 1.0
        assert abs(readings["datetime"] - now_s) < 1.0
        assert abs(readings["utcnow"] - now_s) < 1.0
        for sampler in background:
            def caught_up(worker: int = worker, sampler: str = sampler) -> bool:
                return abs(probe_cluster.readings(worker)[sampler] - clock.now_s()) < 1.0

            assert wait_until(caught_up, timeout_s=5), \
                f"the {sampler} of worker {worker} did not see the jump"
    assert abs(store_time_s(probe_cluster.store.url) - clock.now_s()) < 1.0


@pytest.mark.e2e
@pytest.mark.parametrize("probe_cluster", COMBINATIONS, indirect=True,
                         ids=[f"{c}-{d}" for c, d, _ in COMBINATIONS])
def test_frozen_workers_stand_still(probe_cluster: ProbeCluster) -> None:
    probe_cluster.clock.freeze()
    frozen_s = probe_cluster.clock.now_s()

    first = probe_cluster.readings(0)["handler"]
    time.sleep(0.2)  # real time passing while virtual time stands is the subject
    second = probe_cluster.readings(0)["handler"]

    assert first == pytest.approx(frozen_s, abs=0.01)
    assert second == first


FROZEN_TIMEOUT_COMBINATIONS = [("uvicorn", "time-machine", 2), ("uvicorn", "freezegun", 2),
                               ("gthread", "freezegun", 2)]


@pytest.mark.e2e
@pytest.mark.parametrize("probe_cluster", FROZEN_TIMEOUT_COMBINATIONS, indirect=True,
                         ids=[f"{c}-{d}" for c, d, _ in FROZEN_TIMEOUT_COMBINATIONS])
def test_frozen_past_timeout_kills_no_worker(probe_cluster: ProbeCluster) -> None:
    pids = probe_cluster.cluster.worker_pids()
    probe_cluster.clock.freeze()

    # Outlast the 2 s worker timeout twice over: the wait itself is the subject.
    time.sleep(5)

    assert probe_cluster.cluster.worker_pids() == pids


@pytest.mark.e2e
@pytest.mark.parametrize("probe_cluster", [("uvicorn", "freezegun", 2)], indirect=True,
                         ids=["uvicorn-freezegun"])
def test_hung_worker_is_still_killed(probe_cluster: ProbeCluster) -> None:
    pids = probe_cluster.cluster.worker_pids()
    probe_cluster.clock.freeze()
    hung = pids[0]

    os.kill(hung, signal.SIGSTOP)
    try:
        replaced = wait_until(lambda: hung not in probe_cluster.cluster.worker_pids()
                              and len(probe_cluster.cluster.worker_pids()) == WORKERS,
                              timeout_s=20, interval_s=0.1)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(hung, signal.SIGCONT)

    assert replaced
    assert pids[1] in probe_cluster.cluster.worker_pids()
