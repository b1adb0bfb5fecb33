"""The store proxy: each fault takes effect, reaches open connections, and ends."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from typing import cast

import fakeredis
import pytest
import redis

from harness.store_proxy import CommandMatch, ProxyError, StoreProxy, proxied_url


@pytest.fixture(scope="module")
def store_port() -> Iterator[int]:
    """A fakeredis server on a free loopback port, in a thread of the test process."""
    server = fakeredis.TcpFakeServer(("127.0.0.1", 0))
    handler_class = cast(type, server.RequestHandlerClass)
    server.RequestHandlerClass = type(
        "NoDelayHandler", (handler_class,), {"disable_nagle_algorithm": True}
    )
    thread = threading.Thread(target=server.serve_forever, name="fakeredis", daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@pytest.fixture
def proxy(store_port: int) -> Iterator[StoreProxy]:
    with StoreProxy(("127.0.0.1", store_port)) as running:
        yield running


@pytest.fixture
def client(proxy: StoreProxy) -> Iterator[redis.Redis]:
    """A client through the proxy that, like the service's, retries nothing itself."""
    connection = redis.Redis.from_url(proxy.url, socket_timeout=0.5, retry=None)
    yield connection
    connection.close()


@pytest.fixture
def direct(store_port: int) -> Iterator[redis.Redis]:
    """A client that bypasses the proxy, to see what reached the store."""
    connection = redis.Redis(port=store_port, socket_timeout=2)
    yield connection
    connection.close()


def round_trip_s(client: redis.Redis) -> float:
    started = time.monotonic()
    client.ping()
    return time.monotonic() - started


def test_proxied_url_keeps_credentials_and_db() -> None:
    url = proxied_url("redis://user:secret@10.0.0.5:6400/3?protocol=3", "127.0.0.1", 4000)

    assert url == "redis://user:secret@127.0.0.1:4000/3?protocol=3"


def test_command_match_on_argument() -> None:
    write = [b"EVALSHA", b"abc", b"4", b"p:record:1", b"p:done:1"]
    read = [b"EVALSHA", b"def", b"1", b"p:lookup:1"]
    match = CommandMatch("evalsha", b":done:")

    assert match.matches(write)
    assert not match.matches(read)
    assert not match.matches([b"HGET", b"p:done:1"])


# Forwarding and faults


def test_forwards_commands(client: redis.Redis, direct: redis.Redis, proxy: StoreProxy) -> None:
    client.set("proxy-test:forward", "1")
    with client.pipeline(transaction=True) as pipe:
        pipe.incr("proxy-test:forward")
        pipe.get("proxy-test:forward")
        replies = pipe.execute()

    assert replies == [2, b"2"]
    assert direct.get("proxy-test:forward") == b"2"
    assert proxy.stats().commands_forwarded >= 5


def test_latency_delays_and_ends(client: redis.Redis, proxy: StoreProxy) -> None:
    client.ping()  # the connection is open before the fault starts

    proxy.set_latency(0.2)
    delayed_s = round_trip_s(client)
    proxy.set_latency(0)
    # The fastest of three, so that one ping delayed by a busy machine does not count.
    after_s = min(round_trip_s(client) for _ in range(3))

    assert 0.2 <= delayed_s < 0.45
    assert after_s < 0.1


def test_reset_reaches_open_connection(proxy: StoreProxy, client: redis.Redis) -> None:
    with socket.create_connection(proxy.address, timeout=2) as raw:
        raw.sendall(b"*1\r\n$4\r\nPING\r\n")
        assert raw.recv(100) == b"+PONG\r\n"

        reset = proxy.reset_connections()

        with pytest.raises(ConnectionResetError):
            raw.recv(100)
    assert reset >= 1
    assert client.ping() is True


def test_outage_resets_and_ends(client: redis.Redis, proxy: StoreProxy) -> None:
    client.ping()

    proxy.set_outage(True)
    with pytest.raises(redis.ConnectionError):
        client.ping()
    with pytest.raises(redis.ConnectionError):
        redis.Redis.from_url(proxy.url, socket_timeout=0.5).ping()
    proxy.set_outage(False)

    assert client.ping() is True


def test_hang_times_out_and_ends(client: redis.Redis, proxy: StoreProxy) -> None:
    client.ping()

    proxy.set_hanging(True)
    started = time.monotonic()
    with pytest.raises(redis.TimeoutError):
        client.ping()
    waited_s = time.monotonic() - started
    proxy.set_hanging(False)

    assert 0.5 <= waited_s < 1.0
    assert client.ping() is True


def test_errors_only_for_chosen_command(client: redis.Redis, proxy: StoreProxy) -> None:
    client.set("proxy-test:errors", "1")

    proxy.fail_commands([CommandMatch("GET")], "ERR chosen command fails")
    with client.pipeline(transaction=False) as pipe:
        pipe.set("proxy-test:errors", "2")
        pipe.get("proxy-test:errors")
        pipe.incr("proxy-test:errors")
        pipe.get("proxy-test:errors")
        replies = pipe.execute(raise_on_error=False)
    proxy.fail_commands([])
    after = client.get("proxy-test:errors")

    assert replies[0] is True
    assert isinstance(replies[1], redis.ResponseError)
    assert "chosen command fails" in str(replies[1])
    assert replies[2] == 3
    assert isinstance(replies[3], redis.ResponseError)
    assert after == b"3"
    assert proxy.stats().errors_injected == 2


def test_reset_after_reply_applies_write(
    client: redis.Redis, direct: redis.Redis, proxy: StoreProxy
) -> None:
    direct.delete("proxy-test:cut")

    proxy.reset_after_reply(CommandMatch("INCRBY"), count=1)
    with pytest.raises(redis.ConnectionError):
        client.incr("proxy-test:cut")
    again = client.incr("proxy-test:cut")

    assert direct.get("proxy-test:cut") == b"2"
    assert again == 2
    assert proxy.reset_after_reply_remaining() == 0
    assert proxy.stats().replies_cut == 1


def test_clear_faults_ends_everything(client: redis.Redis, proxy: StoreProxy) -> None:
    proxy.set_latency(0.3)
    proxy.fail_commands([CommandMatch("PING")])
    proxy.reset_after_reply(CommandMatch("PING"), count=3)

    proxy.clear_faults()

    assert round_trip_s(client) < 0.1


def test_new_upstream_for_new_connections(store_port: int, proxy: StoreProxy) -> None:
    other = fakeredis.TcpFakeServer(("127.0.0.1", 0))
    thread = threading.Thread(target=other.serve_forever, daemon=True)
    thread.start()
    try:
        redis.Redis(port=other.server_address[1]).set("proxy-test:where", "other")

        proxy.set_upstream("127.0.0.1", other.server_address[1])
        value = redis.Redis.from_url(proxy.url).get("proxy-test:where")
    finally:
        other.shutdown()
        other.server_close()

    assert value == b"other"


def test_control_needs_running_proxy(store_port: int) -> None:
    proxy = StoreProxy(("127.0.0.1", store_port))

    with pytest.raises(ProxyError, match="not running"):
        proxy.set_latency(0.1)


def test_stop_closes_connections(store_port: int) -> None:
    proxy = StoreProxy(("127.0.0.1", store_port))
    proxy.start()
    connection = redis.Redis.from_url(proxy.url, socket_timeout=0.5, retry=None)
    connection.ping()

    proxy.stop()
    proxy.stop()

    with pytest.raises(redis.ConnectionError):
        connection.ping()
