"""The stores: embedded fakeredis, a spawned redis-server, and a Redis by URL."""

from __future__ import annotations

from pathlib import Path

import pytest
import redis

from harness.processes import StartError
from harness.store import EmbeddedStore, ExternalStore, RedisServerStore, make_store
from tests.conftest import alive


@pytest.mark.parametrize("store_class", [EmbeddedStore, RedisServerStore])
def test_store_serves_and_stops(store_class: type, run_dir: Path) -> None:
    store = store_class(key_prefix="test:")
    store.start(run_dir)
    pid = store._process.pid
    try:
        client = redis.Redis.from_url(store.url)
        client.set("test:key", "value", ex=60)
        assert client.get("test:key") == b"value"
        assert 0 < client.ttl("test:key") <= 60
        client.close()
    finally:
        store.stop()

    assert alive([pid]) == []


def test_embedded_store_runs_lua(run_dir: Path) -> None:
    store = EmbeddedStore(key_prefix="test:")
    store.start(run_dir)
    try:
        client = redis.Redis.from_url(store.url)
        client.set("test:key", "7")
        assert client.eval("return redis.call('GET', KEYS[1])", 1, "test:key") == b"7"
        client.close()
    finally:
        store.stop()


def test_missing_redis_binary_says_how_to_install(run_dir: Path) -> None:
    store = RedisServerStore(key_prefix="test:", binary="no-such-redis-server")

    with pytest.raises(StartError) as raised:
        store.start(run_dir)

    assert "'no-such-redis-server' binary, which is not on PATH" in str(raised.value)
    assert "apt-get install redis-server" in str(raised.value)


def test_external_store_deletes_only_own_keys(run_dir: Path) -> None:
    server = RedisServerStore(key_prefix="unused:")
    server.start(run_dir)
    try:
        client = redis.Redis.from_url(server.url)
        client.set("mine:1", "a")
        client.set("mine:2", "b")
        client.set("theirs:1", "c")
        store = ExternalStore(external_url=server.url, key_prefix="mine:")
        store.start(run_dir)

        store.stop()

        assert client.exists("mine:1", "mine:2") == 0
        assert client.get("theirs:1") == b"c"
        client.close()
    finally:
        server.stop()


def test_external_store_without_server_fails(run_dir: Path) -> None:
    store = ExternalStore(external_url="redis://127.0.0.1:1/0", key_prefix="x:")

    with pytest.raises(StartError, match=r"no Redis answered PING at redis://127\.0\.0\.1:1/0"):
        store.start(run_dir)


def test_unknown_store_lists_choices() -> None:
    with pytest.raises(ValueError, match="unknown store 'memcached': use one of fakeredis"):
        make_store("memcached", key_prefix="x:")
