"""The scan API of the correct service, in-process, against a fakeredis TCP server."""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from redis.asyncio import Redis

from service_under_test.settings import Settings
from service_under_test.strategies import STRATEGY_IDS
from tests.service_under_test.conftest import WorkerFactory
from tests.service_under_test.helpers import (
    API,
    auth,
    discover,
    get_results,
    get_status,
    run_worker,
    wait_for_status,
    wait_for_stored_status,
    wait_until,
)

pytestmark = pytest.mark.anyio


def closed_port() -> int:
    """Return a loopback port that was free a moment ago and has no listener now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def assert_worker_header(response: httpx.Response) -> None:
    __tracebackhide__ = True
    assert response.headers["X-Worker-Id"] == str(os.getpid())


async def test_healthz_names_worker(worker: WorkerFactory) -> None:
    async with worker() as client:
        response = await client.get("/healthz")

    assert response.status_code == 200
    assert response.json() == {"worker_id": os.getpid()}
    assert_worker_header(response)


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer"},
        {"Authorization": "Bearer alice.0000"},
        {"Authorization": "Basic YWxpY2U6cHc="},
        {"Authorization": auth("alice")["Authorization"].replace("Bearer", "Token")},
    ],
)
async def test_requests_without_valid_token_401(
    worker: WorkerFactory, headers: dict[str, str]
) -> None:
    async with worker() as client:
        responses = [
            await client.post(f"{API}/discover", json={}, headers=headers),
            await client.get(f"{API}/status/abc", headers=headers),
            await client.get(f"{API}/results/abc", headers=headers),
        ]

    for response in responses:
        assert response.status_code == 401
        assert response.headers["WWW-Authenticate"] == "Bearer"
        assert "bearer token" in response.json()["detail"]
        assert_worker_header(response)


@pytest.mark.parametrize(
    "body",
    [
        {"strategy_ids": []},
        {"strategy_ids": ["momentum", "no_such_strategy"]},
        {"strategy_ids": ["momentum", "momentum"]},
        {"strategy_ids": "momentum"},
        {"symbols": []},
        {"symbols": [""]},
        {"symbols": ["BTC-USD,ETH-USD"]},
        {"symbols": ["BTC-USD", "BTC-USD"]},
        {"force_refresh": "sometimes"},
        {"strategies": ["momentum"]},
    ],
)
async def test_discover_invalid_input_422(worker: WorkerFactory, body: dict[str, Any]) -> None:
    async with worker() as client:
        response = await client.post(f"{API}/discover", json=body, headers=auth())

    assert response.status_code == 422
    assert_worker_header(response)


async def test_discover_without_body(worker: WorkerFactory) -> None:
    async with worker() as client:
        response = await client.post(f"{API}/discover", headers=auth())

    assert response.status_code == 200
    assert response.json()["total_strategies"] == 14


async def test_discover_status_results(worker: WorkerFactory) -> None:
    async with worker() as client:
        started = await discover(client, force_refresh=True)
        scan_id = started["scan_id"]
        first = await get_status(client, scan_id)
        complete = await wait_for_status(client, scan_id, "complete")
        results = await get_results(client, scan_id)

    assert started == {
        "scan_id": scan_id,
        "status": "initiated",
        "total_strategies": 14,
        "poll_url": f"{API}/status/{scan_id}",
        "results_url": f"{API}/results/{scan_id}",
    }
    assert len(scan_id) == 32
    assert first["status"] in ("scanning", "complete")
    assert first["progress"]["total_strategies"] == 14

    progress = complete["progress"]
    assert progress["strategies_completed"] == 14
    assert progress["total_strategies"] == 14
    assert progress["percentage"] == 100.0

    assert results.status_code == 200
    body = results.json()
    assert body["scan_id"] == scan_id
    assert body["status"] == "complete"
    assert [entry["strategy_id"] for entry in body["results"]] == list(STRATEGY_IDS)
    found = sum(len(entry["opportunities"]) for entry in body["results"])
    assert progress["opportunities_found_so_far"] == found
    assert_worker_header(results)


async def test_discover_subset_of_strategies(worker: WorkerFactory) -> None:
    chosen = ["hedging", "momentum", "options"]
    async with worker() as client:
        started = await discover(client, strategy_ids=chosen, symbols=["SOL-USD"])
        await wait_for_status(client, started["scan_id"], "complete")
        results = await get_results(client, started["scan_id"])

    assert started["total_strategies"] == 3
    assert [entry["strategy_id"] for entry in results.json()["results"]] == chosen
    for entry in results.json()["results"]:
        assert {o["symbol"] for o in entry["opportunities"]} <= {"SOL-USD"}


async def test_every_post_gets_new_scan_id(worker: WorkerFactory) -> None:
    async with worker() as client:
        scan_ids = {(await discover(client))["scan_id"] for _ in range(5)}

    assert len(scan_ids) == 5


async def test_results_202_while_scanning(worker: WorkerFactory) -> None:
    async with worker(strategy_duration_s=0.5) as client:
        started = await discover(client, strategy_ids=["momentum", "breakout"])
        response = await get_results(client, started["scan_id"])

    assert response.status_code == 202
    body = response.json()
    assert body["status"] == "scanning"
    assert body["progress"]["total_strategies"] == 2
    assert_worker_header(response)


async def test_unknown_scan_not_found(worker: WorkerFactory) -> None:
    async with worker() as client:
        status = await get_status(client, "0" * 32)
        results = await get_results(client, "0" * 32)

    assert status == {"scan_id": "0" * 32, "status": "not_found", "progress": None}
    assert results.status_code == 404
    assert_worker_header(results)


async def test_other_users_scan_hidden(worker: WorkerFactory) -> None:
    async with worker() as client:
        started = await discover(client, user="alice")
        scan_id = started["scan_id"]
        await wait_for_status(client, scan_id, "complete", user="alice")
        status = await get_status(client, scan_id, user="bob")
        results = await get_results(client, scan_id, user="bob")

    assert status["status"] == "not_found"
    assert status["progress"] is None
    assert results.status_code == 404


async def test_any_worker_serves_scan(worker: WorkerFactory) -> None:
    async with worker(strategy_duration_s=0.05) as first, worker() as second:
        started = await discover(first)
        scan_id = started["scan_id"]
        early = await get_status(second, scan_id)
        await wait_for_status(second, scan_id, "complete")
        results = [await get_results(second, scan_id) for _ in range(2)]

    assert early["status"] == "scanning"
    assert early["progress"]["total_strategies"] == 14
    for response in results:
        assert response.status_code == 200
        assert len(response.json()["results"]) == 14


async def test_same_filters_scans_independent(worker: WorkerFactory) -> None:
    async with worker(strategy_duration_s=0.02) as client:
        first = await discover(client)
        second = await discover(client)
        for started in (first, second):
            answer = await wait_for_status(client, started["scan_id"], "complete")
            assert answer["progress"]["strategies_completed"] == 14


async def test_keys_share_retention_ttl(
    worker: WorkerFactory, redis_client: Redis, key_prefix: str
) -> None:
    async with worker(retention_s=120) as client:
        started = await discover(client)
        scan_id = started["scan_id"]
        await wait_for_status(client, scan_id, "complete")

    for kind in ("record", "done", "results", "lookup"):
        ttl_ms = await redis_client.pttl(f"{key_prefix}{kind}:{scan_id}")
        assert 110_000 < ttl_ms <= 120_000, kind


async def test_unreachable_store_503(make_settings: Callable[..., Settings]) -> None:
    settings = make_settings(redis_url=f"redis://127.0.0.1:{closed_port()}/0")

    async with run_worker(settings) as client:
        started_at = time.monotonic()
        responses = [
            await client.get(f"{API}/status/abc", headers=auth()),
            await client.get(f"{API}/results/abc", headers=auth()),
            await client.post(f"{API}/discover", json={}, headers=auth()),
        ]
        elapsed_s = time.monotonic() - started_at

    for response in responses:
        assert response.status_code == 503
        assert response.headers["Retry-After"] == "1"
        assert "store is unavailable" in response.json()["detail"]
        assert_worker_header(response)
    # Three requests, each retrying within a 0.3 s budget.
    assert elapsed_s < 3 * 0.3 + 1.0


async def test_stale_heartbeat_reported_failed(
    worker: WorkerFactory, redis_client: Redis, key_prefix: str
) -> None:
    async with worker(strategy_duration_s=0.2, stale_s=30) as client:
        started = await discover(client, strategy_ids=["momentum", "breakout", "hedging"])
        scan_id = started["scan_id"]
        record = f"{key_prefix}record:{scan_id}"
        # As if the worker had hung for longer than stale_s.
        await redis_client.hset(record, "heartbeat_at", repr(time.time() - 31))

        status = await get_status(client, scan_id)
        results = await get_results(client, scan_id)
        # The runner's next write finds the stale heartbeat and marks the scan failed
        # instead of reviving it.
        await wait_for_stored_status(redis_client, key_prefix, scan_id, "failed")
        later = await get_status(client, scan_id)

    assert status["status"] == "failed"
    assert results.status_code == 200
    assert results.json()["status"] == "failed"
    assert later["status"] == "failed"
    assert later["progress"]["strategies_completed"] == 0


async def test_heartbeat_refreshes_record(
    worker: WorkerFactory, redis_client: Redis, key_prefix: str
) -> None:
    async with worker(strategy_duration_s=1.0, heartbeat_s=0.02, stale_s=5) as client:
        started = await discover(client, strategy_ids=["momentum"])
        record = f"{key_prefix}record:{started['scan_id']}"
        first_beat = float(await redis_client.hget(record, "heartbeat_at") or 0)

        async def beat_advanced() -> bool:
            return float(await redis_client.hget(record, "heartbeat_at") or 0) > first_beat

        await wait_until(beat_advanced, timeout_s=2, what="a heartbeat write")


async def test_shutdown_marks_running_scans_failed(
    worker: WorkerFactory, redis_client: Redis, key_prefix: str
) -> None:
    async with worker(strategy_duration_s=5.0) as client:
        started = await discover(client)

    status = await redis_client.hget(f"{key_prefix}record:{started['scan_id']}", "status")
    assert status == "failed"


async def test_unhandled_error_500_with_worker_id(
    make_settings: Callable[..., Settings], monkeypatch: pytest.MonkeyPatch
) -> None:
    from service_under_test.service import ScanService

    async def broken(self: ScanService, user: str, scan_id: str) -> None:
        raise RuntimeError("bug")

    monkeypatch.setattr(ScanService, "read_status", broken)
    async with run_worker(make_settings()) as client:
        response = await client.get(f"{API}/status/abc", headers=auth())

    assert response.status_code == 500
    assert response.json() == {"detail": "internal server error"}
    assert_worker_header(response)
