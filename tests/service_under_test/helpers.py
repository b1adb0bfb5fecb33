"""Helpers for in-process tests of the scan service: workers, requests and waits."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
from redis.asyncio import Redis

from service_under_test.app import create_app
from service_under_test.auth import mint_token
from service_under_test.settings import Settings

TOKEN_SECRET = "test-secret"
API = "/api/v1/opportunities"


@asynccontextmanager
async def run_worker(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """Run one app instance with its lifespan and yield a client bound to it."""
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://worker") as client:
            yield client


def auth(user: str = "alice") -> dict[str, str]:
    return {"Authorization": f"Bearer {mint_token(TOKEN_SECRET, user)}"}


async def discover(client: httpx.AsyncClient, user: str = "alice", **body: Any) -> dict[str, Any]:
    response = await client.post(f"{API}/discover", json=body, headers=auth(user))
    assert response.status_code == 200, response.text
    started: dict[str, Any] = response.json()
    return started


async def get_status(
    client: httpx.AsyncClient, scan_id: str, user: str = "alice"
) -> dict[str, Any]:
    response = await client.get(f"{API}/status/{scan_id}", headers=auth(user))
    assert response.status_code == 200, response.text
    answer: dict[str, Any] = response.json()
    return answer


async def get_results(
    client: httpx.AsyncClient, scan_id: str, user: str = "alice"
) -> httpx.Response:
    return await client.get(f"{API}/results/{scan_id}", headers=auth(user))


async def wait_until(
    check: Callable[[], Awaitable[bool]], timeout_s: float = 5.0, what: str = "condition"
) -> None:
    """Await ``check()`` until it returns True, failing after ``timeout_s`` of real time."""
    __tracebackhide__ = True
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if await check():
            return
        await asyncio.sleep(0.005)
    pytest.fail(f"timed out after {timeout_s} s waiting for {what}")


async def wait_for_status(
    client: httpx.AsyncClient,
    scan_id: str,
    expected: str,
    user: str = "alice",
    timeout_s: float = 5.0,
) -> dict[str, Any]:
    """Poll the status of ``scan_id`` until it is ``expected`` and return that response body."""
    __tracebackhide__ = True
    answers: list[dict[str, Any]] = []

    async def reached() -> bool:
        answers.append(await get_status(client, scan_id, user))
        return bool(answers[-1]["status"] == expected)

    await wait_until(reached, timeout_s, f"scan {scan_id} to be {expected}")
    return answers[-1]


async def wait_for_stored_status(
    redis_client: Redis, key_prefix: str, record_id: str, expected: str, timeout_s: float = 5.0
) -> None:
    """Wait until the record in the store has status ``expected``, without asking a worker."""
    __tracebackhide__ = True

    async def reached() -> bool:
        status = await redis_client.hget(f"{key_prefix}record:{record_id}", "status")
        return bool(status == expected)

    await wait_until(reached, timeout_s, f"record {record_id} to be {expected} in the store")
