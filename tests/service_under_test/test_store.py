"""The scan store: keys, TTLs, guarded writes, the terminal transaction and the atomic read."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Callable

import pytest
from redis.asyncio import Redis

from service_under_test.settings import Settings
from service_under_test.store import ScanKeys, ScanStatus, Store, WriteOutcome, open_store

pytestmark = pytest.mark.anyio

STRATEGIES = ["momentum", "breakout", "hedging"]


@pytest.fixture
async def store(make_settings: Callable[..., Settings]) -> AsyncIterator[Store]:
    store = open_store(make_settings(retention_s=60, stale_s=30))
    try:
        yield store
    finally:
        await store.close()


def placeholder(
    scan_id: str, user: str = "alice", now_s: float | None = None
) -> dict[str, str | int | float]:
    now_s = time.time() if now_s is None else now_s
    return {
        "scan_id": scan_id,
        "user": user,
        "status": "scanning",
        "total": len(STRATEGIES),
        "strategy_ids": json.dumps(STRATEGIES),
        "symbols": json.dumps(["BTC-USD"]),
        "opportunities": 0,
        "created_at": repr(now_s),
        "heartbeat_at": repr(now_s),
    }


def entry(strategy_id: str) -> dict[str, object]:
    return {"strategy_id": strategy_id, "opportunities": []}


async def create(store: Store, scan_id: str, **fields: str) -> ScanKeys:
    keys = store.keys(scan_id)
    await store.create_placeholder(keys, placeholder(scan_id) | fields, write_lookup=True)
    return keys


def test_key_names() -> None:
    keys = ScanKeys.build("run:", "abc", "abc")

    assert keys.all == ("run:record:abc", "run:done:abc", "run:results:abc", "run:lookup:abc")
    assert ScanKeys.from_record_key("run:", "abc", "run:record:slot:x") == ScanKeys.build(
        "run:", "abc", "slot:x"
    )


async def test_placeholder_read_back(store: Store, redis_client: Redis) -> None:
    keys = await create(store, "s1")

    snapshot = await store.read_scan("s1")

    assert snapshot is not None
    assert snapshot.keys == keys
    assert snapshot.user == "alice"
    assert snapshot.status is ScanStatus.SCANNING
    assert snapshot.total == 3
    assert snapshot.completed == 0
    assert snapshot.strategy_ids == tuple(STRATEGIES)
    assert await redis_client.get(keys.lookup) == keys.record


async def test_unknown_scan_reads_none(store: Store) -> None:
    assert await store.read_scan("nope") is None


async def test_every_key_has_retention_ttl(store: Store, redis_client: Redis) -> None:
    keys = await create(store, "s1")
    await store.write_progress(keys, time.time(), entry("momentum"), 2)
    await store.write_heartbeat(keys, time.time())
    await store.finish(keys, ScanStatus.COMPLETE, 3, time.time())

    for key in keys.all:
        ttl_ms = await redis_client.pttl(key)
        assert 59_000 < ttl_ms <= 60_000, key


async def test_progress_is_idempotent(store: Store) -> None:
    keys = await create(store, "s1")

    for _ in range(3):
        outcome = await store.write_progress(keys, time.time(), entry("momentum"), 2)
        assert outcome is WriteOutcome.OK
    await store.write_progress(keys, time.time(), entry("breakout"), 5)

    snapshot = await store.read_scan("s1", with_results=True)
    assert snapshot is not None
    assert snapshot.completed == 2
    assert snapshot.opportunities == 5
    assert snapshot.results == {"momentum": entry("momentum"), "breakout": entry("breakout")}


async def test_write_to_missing_scan(store: Store) -> None:
    keys = store.keys("gone")

    outcome = await store.write_progress(keys, time.time(), entry("momentum"), 0)

    assert outcome is WriteOutcome.MISSING
    assert await store.read_scan("gone") is None


async def test_write_after_terminal_rejected(store: Store) -> None:
    keys = await create(store, "s1")
    await store.finish(keys, ScanStatus.COMPLETE, 3, time.time())

    assert await store.write_heartbeat(keys, time.time()) is WriteOutcome.TERMINAL
    assert await store.write_progress(keys, time.time(), entry("momentum"), 1) is (
        WriteOutcome.TERMINAL
    )
    snapshot = await store.read_scan("s1")
    assert snapshot is not None
    assert snapshot.completed == 0


async def test_write_to_stale_scan_rejected(store: Store) -> None:
    keys = await create(store, "s1", heartbeat_at=repr(time.time() - 31))

    outcome = await store.write_progress(keys, time.time(), entry("momentum"), 1)

    assert outcome is WriteOutcome.STALE
    snapshot = await store.read_scan("s1")
    assert snapshot is not None
    assert snapshot.completed == 0


async def test_finish_is_idempotent(store: Store) -> None:
    keys = await create(store, "s1")

    first = await store.finish(keys, ScanStatus.COMPLETE, 3, time.time())
    again = await store.finish(keys, ScanStatus.COMPLETE, 3, time.time())
    other = await store.finish(keys, ScanStatus.FAILED, 3, time.time())

    assert first == (WriteOutcome.OK, ScanStatus.COMPLETE)
    assert again == (WriteOutcome.OK, ScanStatus.COMPLETE)
    assert other == (WriteOutcome.TERMINAL, ScanStatus.COMPLETE)


async def test_finish_stale_scan_as_failed(store: Store) -> None:
    keys = await create(store, "s1", heartbeat_at=repr(time.time() - 31))

    outcome = await store.finish(keys, ScanStatus.COMPLETE, 3, time.time())

    assert outcome == (WriteOutcome.STALE, ScanStatus.FAILED)
    snapshot = await store.read_scan("s1")
    assert snapshot is not None
    assert snapshot.status is ScanStatus.FAILED


async def test_finish_can_delete_lookup(store: Store, redis_client: Redis) -> None:
    keys = await create(store, "s1")

    await store.finish(keys, ScanStatus.COMPLETE, 3, time.time(), delete_lookup=True)

    assert await redis_client.exists(keys.lookup) == 0
    assert await redis_client.exists(keys.record) == 1
    assert await store.read_scan("s1") is None
    assert await store.read_scan("s1", record_key=keys.record) is not None


async def test_read_without_lookup_key(store: Store) -> None:
    keys = store.keys("s1")
    await store.create_placeholder(keys, placeholder("s1"), write_lookup=False)

    assert await store.read_scan("s1") is None
    snapshot = await store.read_scan("s1", record_key=keys.record)
    assert snapshot is not None
    assert snapshot.user == "alice"


async def test_placeholder_resets_shared_record(store: Store) -> None:
    first = store.keys("s1", "slot:1")
    second = store.keys("s2", "slot:1")
    await store.create_placeholder(first, placeholder("s1"), write_lookup=True)
    await store.write_progress(first, time.time(), entry("momentum"), 1)

    await store.create_placeholder(second, placeholder("s2"), write_lookup=True)

    snapshot = await store.read_scan("s1", with_results=True)
    assert snapshot is not None
    assert snapshot.keys.record == second.record
    assert snapshot.completed == 0
    assert snapshot.results == {}


async def test_incomplete_record_reads_none(store: Store, redis_client: Redis) -> None:
    keys = store.keys("s1")
    await redis_client.set(keys.lookup, keys.record)
    await redis_client.hset(keys.record, "completed", 3)

    assert await store.read_scan("s1") is None
