"""Fixtures for in-process tests of the scan service.

Each test gets its own key prefix on one fakeredis TCP server per session, so the real
redis-py client path runs. A "worker" is one app instance with its lifespan running,
reached through httpx's ASGI transport. Two workers that share the store stand in for
two gunicorn workers.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractAsyncContextManager
from typing import Any, cast

import fakeredis
import httpx
import pytest
from redis.asyncio import Redis

from harness.store_proxy import StoreProxy
from service_under_test.settings import Settings
from tests.service_under_test.helpers import TOKEN_SECRET, run_worker


@pytest.fixture(scope="session")
def store_url() -> Iterator[str]:
    """Serve fakeredis on a free loopback port for the whole session."""
    server = fakeredis.TcpFakeServer(("127.0.0.1", 0))
    # Without TCP_NODELAY every MULTI/EXEC waits for a delayed ACK, about 44 ms.
    handler_class = cast(type, server.RequestHandlerClass)
    server.RequestHandlerClass = type(
        "NoDelayHandler", (handler_class,), {"disable_nagle_algorithm": True}
    )
    thread = threading.Thread(target=server.serve_forever, name="fakeredis", daemon=True)
    thread.start()
    port = server.server_address[1]
    try:
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@pytest.fixture
def store_proxy(store_url: str) -> Iterator[StoreProxy]:
    """A store proxy in front of the session's store; workers reach it at ``proxy.url``."""
    port = int(store_url.rsplit(":", 1)[1].split("/")[0])
    with StoreProxy(("127.0.0.1", port)) as proxy:
        yield proxy


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def key_prefix() -> str:
    return f"test-{uuid.uuid4().hex[:8]}:"


@pytest.fixture
def make_settings(store_url: str, key_prefix: str) -> Callable[..., Settings]:
    """Return a factory of Settings for this test's key prefix, with fast strategies."""

    def build(**overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "redis_url": store_url,
            "key_prefix": key_prefix,
            "token_secret": TOKEN_SECRET,
            "strategy_duration_s": 0.005,
            "store_retry_budget_s": 0.3,
        }
        values.update(overrides)
        return Settings(**values)

    return build


@pytest.fixture
async def redis_client(store_url: str) -> AsyncIterator[Redis]:
    """A client for inspecting and changing the store directly."""
    client = Redis.from_url(store_url, decode_responses=True)
    try:
        yield client
    finally:
        await client.aclose()


WorkerFactory = Callable[..., AbstractAsyncContextManager[httpx.AsyncClient]]


@pytest.fixture
def worker(make_settings: Callable[..., Settings]) -> WorkerFactory:
    """Return a factory: ``async with worker(faults=...) as client`` runs one worker."""

    def start(**overrides: Any) -> AbstractAsyncContextManager[httpx.AsyncClient]:
        return run_worker(make_settings(**overrides))

    return start
