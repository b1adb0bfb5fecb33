"""Each fault shows the symptom its registry entry promises.

Cross-worker faults use two app instances that share one store, standing in for two
gunicorn workers. The correct service's behaviour in the same situations is tested in
test_api.py.
"""

from __future__ import annotations

import asyncio

import pytest
from redis.asyncio import Redis

from harness.store_proxy import CommandMatch, StoreProxy
from tests.service_under_test.conftest import WorkerFactory
from tests.service_under_test.helpers import (
    discover,
    get_results,
    get_status,
    wait_for_status,
    wait_for_stored_status,
    wait_until,
)

pytestmark = pytest.mark.anyio


async def test_memory_only_lookup(worker: WorkerFactory) -> None:
    async with (
        worker(faults="memory-only-lookup") as accepting,
        worker(faults="memory-only-lookup") as other,
    ):
        started = await discover(accepting)
        scan_id = started["scan_id"]
        complete = await wait_for_status(accepting, scan_id, "complete")
        elsewhere = await get_status(other, scan_id)
        results_elsewhere = await get_results(other, scan_id)
        results_here = await get_results(accepting, scan_id)

    assert complete["progress"]["strategies_completed"] == 14
    assert elsewhere["status"] == "not_found"
    assert results_elsewhere.status_code == 404
    assert results_here.status_code == 200


async def test_lookup_deleted_on_complete(
    worker: WorkerFactory, redis_client: Redis, key_prefix: str
) -> None:
    async with worker(faults="lookup-deleted-on-complete") as client:
        started = await discover(client)
        scan_id = started["scan_id"]
        await wait_for_stored_status(redis_client, key_prefix, scan_id, "complete")
        status = await get_status(client, scan_id)
        results = await get_results(client, scan_id)

    assert status["status"] == "not_found"
    assert results.status_code == 404
    assert await redis_client.exists(f"{key_prefix}record:{scan_id}") == 1


async def test_late_placeholder(worker: WorkerFactory) -> None:
    async with (
        worker(faults="late-placeholder", strategy_duration_s=0.2) as accepting,
        worker(faults="late-placeholder") as other,
    ):
        started = await discover(accepting, strategy_ids=["momentum", "breakout"])
        scan_id = started["scan_id"]
        immediate = await get_status(other, scan_id)
        complete = await wait_for_status(other, scan_id, "complete")

    assert immediate["status"] == "not_found"
    assert complete["progress"]["strategies_completed"] == 2


async def test_no_progress_on_complete(worker: WorkerFactory) -> None:
    async with worker(faults="no-progress-on-complete") as client:
        started = await discover(client)
        complete = await wait_for_status(client, started["scan_id"], "complete")

    assert complete["progress"] is None


async def test_zero_total_placeholder(worker: WorkerFactory) -> None:
    async with worker(faults="zero-total-placeholder", strategy_duration_s=0.1) as client:
        started = await discover(client, strategy_ids=["momentum", "breakout"])
        scan_id = started["scan_id"]
        scanning = await get_status(client, scan_id)
        complete = await wait_for_status(client, scan_id, "complete")

    assert started["total_strategies"] == 2
    assert scanning["status"] == "scanning"
    assert scanning["progress"]["strategies_completed"] == 0
    assert scanning["progress"]["total_strategies"] == 0
    assert complete["progress"]["total_strategies"] == 2


async def test_racy_progress_counter(worker: WorkerFactory) -> None:
    async with worker(faults="racy-progress-counter") as client:
        started = await discover(client)
        scan_id = started["scan_id"]
        complete = await wait_for_status(client, scan_id, "complete")
        results = await get_results(client, scan_id)

    # Each of the 7 pairs most likely loses one of its two updates. A pair whose second
    # read is delayed past the first write (a slow new connection) loses none.
    assert 7 <= complete["progress"]["strategies_completed"] < 14
    assert complete["progress"]["total_strategies"] == 14
    assert len(results.json()["results"]) == 14


async def test_stale_worker_snapshot(
    worker: WorkerFactory, redis_client: Redis, key_prefix: str
) -> None:
    async with (
        worker(faults="stale-worker-snapshot", strategy_duration_s=0.02) as first,
        worker(faults="stale-worker-snapshot") as second,
    ):
        started = await discover(first, strategy_ids=["momentum", "breakout", "hedging"])
        scan_id = started["scan_id"]
        stale = await get_status(second, scan_id)
        # Both workers cache their first response, so wait on the store itself.
        await wait_for_stored_status(redis_client, key_prefix, scan_id, "complete")
        async with worker() as fresh_worker:
            fresh = await get_status(fresh_worker, scan_id)
        again = await get_status(second, scan_id)

    assert stale["status"] == "scanning"
    assert fresh["status"] == "complete"
    assert again == stale
    assert again["progress"]["strategies_completed"] < fresh["progress"]["strategies_completed"]


async def test_shared_result_slot(worker: WorkerFactory) -> None:
    async with worker(faults="shared-result-slot", strategy_duration_s=0.02) as client:
        first = await discover(client)
        first_id = first["scan_id"]

        async def first_progressed() -> bool:
            answer = await get_status(client, first_id)
            return bool(answer["progress"]["strategies_completed"] >= 5)

        await wait_until(first_progressed, what="first scan to finish 5 strategies")
        before = await get_status(client, first_id)
        await discover(client)
        after = await get_status(client, first_id)

    assert after["progress"]["strategies_completed"] < before["progress"]["strategies_completed"]


async def test_no_owner_check(worker: WorkerFactory) -> None:
    async with worker(faults="no-owner-check") as client:
        started = await discover(client, user="alice")
        scan_id = started["scan_id"]
        await wait_for_status(client, scan_id, "complete", user="alice")
        status = await get_status(client, scan_id, user="bob")
        results = await get_results(client, scan_id, user="bob")

    assert status["status"] == "complete"
    assert status["progress"]["strategies_completed"] == 14
    # Only the status path skips the check.
    assert results.status_code == 404


async def test_worker_without_store(worker: WorkerFactory) -> None:
    async with (
        worker(faults="worker-without-store") as accepting,
        worker(faults="worker-without-store") as other,
    ):
        started = await discover(accepting)
        scan_id = started["scan_id"]
        await wait_for_status(accepting, scan_id, "complete")
        status = await get_status(other, scan_id)
        results = await get_results(other, scan_id)
        await discover(other)
        after_post = await get_status(other, scan_id)

    assert status["status"] == "not_found"
    assert results.status_code == 404
    assert after_post["status"] == "complete"


async def test_read_once_results(worker: WorkerFactory) -> None:
    async with worker(faults="read-once-results") as client:
        started = await discover(client)
        scan_id = started["scan_id"]
        await wait_for_status(client, scan_id, "complete")
        first = await get_results(client, scan_id)
        second = await get_results(client, scan_id)

    assert first.status_code == 200
    assert len(first.json()["results"]) == 14
    assert second.status_code == 404


async def test_orphaned_on_worker_death(
    worker: WorkerFactory, redis_client: Redis, key_prefix: str
) -> None:
    fault = {"faults": "orphaned-on-worker-death", "heartbeat_s": 0.05, "stale_s": 0.2}
    async with worker(**fault, strategy_duration_s=5.0) as accepting:
        started = await discover(accepting)
    # The accepting worker has shut down while the scan ran, and stale_s has passed.
    await asyncio.sleep(0.3)
    async with worker(**fault) as other:
        status = await get_status(other, started["scan_id"])

    stored = await redis_client.hget(f"{key_prefix}record:{started['scan_id']}", "status")
    assert stored == "scanning"
    assert status["status"] == "scanning"


async def test_store_error_as_not_found(worker: WorkerFactory, store_proxy: StoreProxy) -> None:
    async with worker(faults="store-error-as-not-found", redis_url=store_proxy.url) as client:
        started = await discover(client)
        scan_id = started["scan_id"]
        store_proxy.fail_commands([CommandMatch("EVALSHA")])
        status = await get_status(client, scan_id)
        results = await get_results(client, scan_id)
        store_proxy.clear_faults()
        after = await get_status(client, scan_id)

    assert status["status"] == "not_found"
    assert results.status_code == 404
    assert after["status"] in ("scanning", "complete")
