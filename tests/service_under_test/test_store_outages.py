"""The correct service through store faults: 503 while the store fails, then recovery.

Each worker reaches the session's store through a store proxy (``harness.store_proxy``)
that injects the fault, so the faults reach connections already open in the worker's
pool. The faulty service's behaviour in the same situations is in test_fault_symptoms.py.
"""

from __future__ import annotations

import time

import pytest
from redis.asyncio import Redis

from harness.store_proxy import CommandMatch, StoreProxy
from tests.service_under_test.conftest import WorkerFactory
from tests.service_under_test.helpers import (
    API,
    auth,
    discover,
    get_results,
    get_status,
    wait_for_status,
)

pytestmark = pytest.mark.anyio


async def test_error_replies_answer_503(worker: WorkerFactory, store_proxy: StoreProxy) -> None:
    async with worker(redis_url=store_proxy.url, strategy_duration_s=0.05) as client:
        started = await discover(client)
        scan_id = started["scan_id"]
        store_proxy.fail_commands([CommandMatch("EVALSHA")])
        status = await client.get(f"{API}/status/{scan_id}", headers=auth())
        results = await get_results(client, scan_id)
        store_proxy.clear_faults()
        after = await get_status(client, scan_id)

    assert status.status_code == 503
    assert status.headers["Retry-After"] == "1"
    assert results.status_code == 503
    assert after["status"] in ("scanning", "complete")
    assert store_proxy.stats().errors_injected >= 2


async def test_reconnects_after_outage(worker: WorkerFactory, store_proxy: StoreProxy) -> None:
    async with worker(redis_url=store_proxy.url, strategy_duration_s=0.02) as client:
        started = await discover(client)
        scan_id = started["scan_id"]
        store_proxy.set_outage(True)
        during = await client.get(f"{API}/status/{scan_id}", headers=auth())
        store_proxy.set_outage(False)
        complete = await wait_for_status(client, scan_id, "complete")

    assert during.status_code == 503
    assert complete["progress"]["strategies_completed"] == 14


async def test_hang_answers_503_in_budget(worker: WorkerFactory, store_proxy: StoreProxy) -> None:
    async with worker(redis_url=store_proxy.url, strategy_duration_s=0.02) as client:
        started = await discover(client)
        scan_id = started["scan_id"]
        store_proxy.set_hanging(True)
        started_at = time.monotonic()
        during = await client.get(f"{API}/status/{scan_id}", headers=auth())
        elapsed_s = time.monotonic() - started_at
        store_proxy.set_hanging(False)
        complete = await wait_for_status(client, scan_id, "complete")

    assert during.status_code == 503
    # The budget is 0.3 s, and each attempt times out after half of it.
    assert elapsed_s < 0.3 + 0.5
    assert complete["progress"]["strategies_completed"] == 14


async def test_lost_write_replies_count_once(
    worker: WorkerFactory, store_proxy: StoreProxy
) -> None:
    # Progress writes are the EVALSHA calls whose keys include the scan's done set.
    store_proxy.reset_after_reply(CommandMatch("EVALSHA", b":done:"), count=5)
    async with worker(redis_url=store_proxy.url, strategy_duration_s=0.01) as client:
        started = await discover(client)
        scan_id = started["scan_id"]
        complete = await wait_for_status(client, scan_id, "complete")
        results = await get_results(client, scan_id)

    assert store_proxy.stats().replies_cut == 5
    assert complete["progress"]["strategies_completed"] == 14
    strategy_ids = [entry["strategy_id"] for entry in results.json()["results"]]
    assert len(strategy_ids) == 14
    assert len(set(strategy_ids)) == 14


async def test_latency_below_timeout_served(
    worker: WorkerFactory, store_proxy: StoreProxy
) -> None:
    async with worker(redis_url=store_proxy.url, strategy_duration_s=0.02) as client:
        started = await discover(client)
        store_proxy.set_latency(0.05)
        started_at = time.monotonic()
        status = await get_status(client, started["scan_id"])
        elapsed_s = time.monotonic() - started_at
        store_proxy.set_latency(0)

    assert status["status"] in ("scanning", "complete")
    assert elapsed_s >= 0.05


async def test_flushed_scripts_loaded_again(worker: WorkerFactory, redis_client: Redis) -> None:
    # A store that restarts empty has forgotten the service's Lua scripts.
    async with worker(strategy_duration_s=0.01) as client:
        started = await discover(client)
        await wait_for_status(client, started["scan_id"], "complete")
        await redis_client.script_flush()
        after = await get_status(client, started["scan_id"])
        second = await discover(client)
        complete = await wait_for_status(client, second["scan_id"], "complete")

    assert after["status"] == "complete"
    assert complete["progress"]["strategies_completed"] == 14
