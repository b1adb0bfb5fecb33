"""The store proxy: a TCP proxy between the workers and the store that injects store faults.

The workers of a run connect to the proxy's loopback port instead of the store's, and the
proxy forwards every byte to the store and back. Because every connection passes through
it, a fault reaches the connections already open in the workers' pools, not only new ones.
The faults, each switched on and off by the harness while the proxy runs:

- *latency*: every request waits ``latency_s`` before it is forwarded to the store;
- *reset*: every open connection is reset (TCP RST), so the client sees
  "connection reset by peer" on its next read;
- *outage*: every open connection is reset and every new one is reset as soon as it is
  accepted, as while a store restarts;
- *hang*: connections stop forwarding in both directions, so clients wait until their
  socket timeout. When the hang ends, the connections it hung are reset, because their
  clients have given up on them;
- *command errors*: commands that match a ``CommandMatch`` are not forwarded, and the
  proxy replies ``-ERR ...`` in their place, keeping the order of the replies;
- *reset after reply*: the next ``count`` commands that match are forwarded and applied by
  the store, but the connection is reset in place of their reply, so the client cannot
  tell whether the write happened (the case that needs idempotent retries).

To recognise commands and keep replies in order, the proxy parses the Redis protocol
(RESP2 and RESP3, see ``harness.resp``) in both directions: one reply is expected per
forwarded command, and an injected error waits until the replies of the commands before
it have been sent.

The proxy runs an asyncio event loop in a thread of the harness process. Its control
methods may be called from any thread, and a fault is in effect when the method returns.

Example::

    with StoreProxy(("127.0.0.1", store_port)) as proxy:
        url = proxy.url                      # give this URL to the workers
        proxy.fail_commands([CommandMatch("EVALSHA")])
        ...                                  # every EVALSHA now gets -ERR
        proxy.clear_faults()
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import struct
import threading
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TypeVar
from urllib.parse import urlsplit, urlunsplit

from harness.resp import (
    Incomplete,
    ProtocolError,
    command_name,
    error_reply,
    parse_command,
    skip_reply,
)

log = logging.getLogger(__name__)

T = TypeVar("T")

DEFAULT_ERROR = "ERR injected by the scan-harness store proxy"
CONTROL_TIMEOUT_S = 5.0
UPSTREAM_CONNECT_TIMEOUT_S = 2.0
READ_CHUNK_BYTES = 65536

# Commands after which one command no longer gets exactly one reply: pub/sub pushes
# messages, MONITOR streams every command, CLIENT REPLY switches replies off. A
# connection that sends one is forwarded unparsed from then on, without command faults.
_UNCOUNTED_COMMANDS = frozenset({
    "SUBSCRIBE", "PSUBSCRIBE", "SSUBSCRIBE", "MONITOR", "CLIENT REPLY", "SYNC", "PSYNC",
})


class ProxyError(RuntimeError):
    """A proxy that cannot start, or a control call that it could not carry out."""


@dataclass(frozen=True, slots=True)
class CommandMatch:
    """Which commands a fault applies to: a command name, and optionally an argument.

    ``name`` is compared without regard to case, and may be two words for a subcommand
    (``"CLIENT SETINFO"``). With ``arg_contains``, a command matches only when one of its
    arguments contains those bytes, which tells apart, for example, an EVALSHA that
    writes progress (its keys include ``done:``) from one that reads a scan.
    """

    name: str
    arg_contains: bytes | None = None

    def matches(self, command: list[bytes]) -> bool:
        if command_name(command) != self.name.upper():
            return False
        if self.arg_contains is None:
            return True
        return any(self.arg_contains in argument for argument in command[1:])


@dataclass(frozen=True, slots=True)
class ProxyStats:
    """Counts since the proxy started, for logs and tests."""

    accepted: int
    open_connections: int
    commands_forwarded: int
    errors_injected: int
    resets: int
    replies_cut: int


def proxied_url(store_url: str, host: str, port: int) -> str:
    """Return ``store_url`` with its host and port replaced by the proxy's.

    The user, password, database and query stay, so the workers talk to the same
    database with the same credentials.
    """
    parts = urlsplit(store_url)
    userinfo = parts.netloc.rpartition("@")[0]
    netloc = f"{userinfo}@{host}:{port}" if userinfo else f"{host}:{port}"
    return urlunsplit(parts._replace(netloc=netloc))


@dataclass(slots=True)
class _Slot:
    """A reply the client is owed, in order: from the store, or injected by the proxy."""

    command: str
    injected: bytes | None = None
    reset_instead: bool = False


@dataclass(slots=True)
class _Rules:
    """The faults in effect. Read by the connections on every chunk, on the proxy's loop."""

    latency_s: float = 0.0
    outage: bool = False
    hanging: bool = False
    fail: tuple[CommandMatch, ...] = ()
    fail_reply: bytes = b""
    reset_match: CommandMatch | None = None
    reset_remaining: int = 0


@dataclass(slots=True)
class _Counters:
    accepted: int = 0
    commands_forwarded: int = 0
    errors_injected: int = 0
    resets: int = 0
    replies_cut: int = 0


class _Link:
    """One client connection and its connection to the store."""

    def __init__(self, proxy: StoreProxy, client_reader: asyncio.StreamReader,
                 client_writer: asyncio.StreamWriter) -> None:
        self.proxy = proxy
        self.client_reader = client_reader
        self.client_writer = client_writer
        self.server_writer: asyncio.StreamWriter | None = None
        self.pending: deque[_Slot] = deque()
        self.parsed = True  # False once the connection is forwarded unparsed
        self.hung = proxy.rules.hanging
        self.closed = False
        self.task: asyncio.Task[None] | None = None

    async def run(self) -> None:
        host, port = self.proxy.upstream
        try:
            server_reader, server_writer = await asyncio.wait_for(
                asyncio.open_connection(host, port), UPSTREAM_CONNECT_TIMEOUT_S)
        except (OSError, TimeoutError) as error:
            log.debug("store proxy could not reach the store at %s:%d: %s", host, port, error)
            self.reset()
            return
        self.server_writer = server_writer
        _set_nodelay(server_writer)

        requests = asyncio.ensure_future(self._pump_requests())
        replies = asyncio.ensure_future(self._pump_replies(server_reader))
        try:
            await asyncio.wait({requests, replies}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (requests, replies):
                task.cancel()
            await asyncio.gather(requests, replies, return_exceptions=True)
            self.close()

    def reset(self) -> None:
        """Reset the client's connection (TCP RST) and close the store's."""
        if self.closed:
            return
        self.proxy.counters.resets += 1
        sock = self.client_writer.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.client_writer.transport.abort()
        self.close()

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self.client_writer.close()
        if self.server_writer is not None:
            self.server_writer.transport.abort()

    async def _pump_requests(self) -> None:
        buffer = bytearray()
        rules = self.proxy.rules
        while not self.closed:
            chunk = await self.client_reader.read(READ_CHUNK_BYTES)
            if not chunk:
                return
            if self.hung:
                continue  # nothing is forwarded; the link is reset when the hang ends
            buffer += chunk
            upstream = self._take_commands(buffer) if self.parsed else self._take_all(buffer)
            if not upstream:
                continue
            if rules.latency_s > 0:
                await asyncio.sleep(rules.latency_s)
            if self.closed or self.hung or self.server_writer is None:
                return
            self.server_writer.write(upstream)
            await self.server_writer.drain()

    @staticmethod
    def _take_all(buffer: bytearray) -> bytes:
        data = bytes(buffer)
        buffer.clear()
        return data

    def _take_commands(self, buffer: bytearray) -> bytes:
        """Consume every complete command in ``buffer``; return the bytes to forward."""
        rules = self.proxy.rules
        counters = self.proxy.counters
        upstream = bytearray()
        position = 0
        while position < len(buffer):
            try:
                command, end = parse_command(buffer, position)
            except Incomplete:
                break
            except ProtocolError as error:
                log.warning("store proxy forwards a connection unparsed after invalid bytes: %s",
                            error)
                self.parsed = False
                upstream += buffer[position:]
                position = len(buffer)
                break
            raw = buffer[position:end]
            position = end
            if not command:
                upstream += raw
                continue
            name = command_name(command)
            if any(match.matches(command) for match in rules.fail):
                counters.errors_injected += 1
                self._owe(_Slot(name, injected=rules.fail_reply))
                continue
            slot = _Slot(name)
            if (rules.reset_match is not None and rules.reset_remaining > 0
                    and rules.reset_match.matches(command)):
                rules.reset_remaining -= 1
                slot.reset_instead = True
            self.pending.append(slot)
            counters.commands_forwarded += 1
            upstream += raw
            if name in _UNCOUNTED_COMMANDS:
                self.parsed = False
                upstream += buffer[position:]
                position = len(buffer)
                break
        del buffer[:position]
        return bytes(upstream)

    def _owe(self, slot: _Slot) -> None:
        """Send an injected reply now, or queue it behind the replies still owed."""
        if self.pending:
            self.pending.append(slot)
        elif slot.injected is not None:
            self.client_writer.write(slot.injected)

    async def _pump_replies(self, server_reader: asyncio.StreamReader) -> None:
        buffer = bytearray()
        while not self.closed:
            chunk = await server_reader.read(READ_CHUNK_BYTES)
            if not chunk:
                return
            if self.hung:
                continue
            buffer += chunk
            if not self.parsed:
                self.client_writer.write(self._take_all(buffer))
            elif not self._deliver_replies(buffer):
                return
            await self.client_writer.drain()

    def _deliver_replies(self, buffer: bytearray) -> bool:
        """Send every complete reply in ``buffer``; return False once the link was reset."""
        out = bytearray()
        position = 0
        while position < len(buffer):
            try:
                end = skip_reply(buffer, position)
            except Incomplete:
                break
            except ProtocolError as error:
                log.warning("store proxy forwards a connection unparsed after an invalid "
                            "reply: %s", error)
                self.parsed = False
                out += buffer[position:]
                position = len(buffer)
                break
            reply = buffer[position:end]
            is_push = buffer[position] == ord(">")
            position = end
            if is_push or not self.pending:
                out += reply  # out-of-band, or a reply this proxy did not count
                continue
            slot = self.pending.popleft()
            if slot.reset_instead:
                self.client_writer.write(bytes(out))
                self.proxy.counters.replies_cut += 1
                log.info("store proxy reset a connection in place of the reply to %s",
                         slot.command)
                self.reset()
                return False
            out += reply
            while self.pending and self.pending[0].injected is not None:
                out += self.pending.popleft().injected or b""
        del buffer[:position]
        if out:
            self.client_writer.write(bytes(out))
        return True


def _set_nodelay(writer: asyncio.StreamWriter) -> None:
    # Without TCP_NODELAY, a pipeline or MULTI/EXEC stalls on Nagle's algorithm.
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


@dataclass
class StoreProxy:
    """A fault-injecting TCP proxy in front of one store, served from a thread."""

    upstream: tuple[str, int]
    host: str = "127.0.0.1"
    port: int = 0
    rules: _Rules = field(default_factory=_Rules, repr=False)
    counters: _Counters = field(default_factory=_Counters, repr=False)
    _links: set[_Link] = field(default_factory=set, repr=False)
    _loop: asyncio.AbstractEventLoop | None = field(default=None, repr=False)
    _server: asyncio.Server | None = field(default=None, repr=False)
    _thread: threading.Thread | None = field(default=None, repr=False)

    @property
    def address(self) -> tuple[str, int]:
        return self.host, self.port

    @property
    def url(self) -> str:
        return f"redis://{self.host}:{self.port}/0"

    def __enter__(self) -> StoreProxy:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # Lifecycle

    def start(self) -> None:
        """Start serving on ``host:port`` (0 picks a free port) and wait until it listens."""
        if self._thread is not None:
            raise ProxyError("the store proxy is already running")
        ready = threading.Event()
        failure: list[BaseException] = []
        self._thread = threading.Thread(target=self._serve, args=(ready, failure),
                                        name="store-proxy", daemon=True)
        self._thread.start()
        if not ready.wait(CONTROL_TIMEOUT_S) or failure:
            cause = failure[0] if failure else None
            self._thread = None
            raise ProxyError(f"the store proxy could not listen on {self.host}:{self.port}: "
                             f"{cause or 'timed out'}") from cause
        log.info("store proxy listening on %s:%d, forwarding to %s:%d", self.host, self.port,
                 *self.upstream)

    def stop(self) -> None:
        """Close every connection and stop the proxy; safe to call twice."""
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        with contextlib.suppress(RuntimeError, TimeoutError):
            asyncio.run_coroutine_threadsafe(self._close(), loop).result(CONTROL_TIMEOUT_S)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(CONTROL_TIMEOUT_S)
        self._thread = None
        self._loop = None
        log.info("store proxy on port %d stopped: %s", self.port, self.stats())

    def _serve(self, ready: threading.Event, failure: list[BaseException]) -> None:
        loop = asyncio.new_event_loop()
        try:
            self._server = loop.run_until_complete(
                asyncio.start_server(self._accept, self.host, self.port))
        except OSError as error:
            failure.append(error)
            ready.set()
            loop.close()
            return
        self.port = self._server.sockets[0].getsockname()[1]
        self._loop = loop
        ready.set()
        try:
            loop.run_forever()
        finally:
            loop.close()

    async def _close(self) -> None:
        if self._server is not None:
            self._server.close()
        links = list(self._links)
        for link in links:
            link.close()
        tasks = {link.task for link in links if link.task is not None}
        if tasks:
            await asyncio.wait(tasks, timeout=CONTROL_TIMEOUT_S / 2)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.counters.accepted += 1
        _set_nodelay(writer)
        link = _Link(self, reader, writer)
        link.task = asyncio.current_task()
        if self.rules.outage:
            link.reset()
            return
        self._links.add(link)
        try:
            await link.run()
        finally:
            self._links.discard(link)

    # Faults

    def stats(self) -> ProxyStats:
        counters = self.counters
        return ProxyStats(accepted=counters.accepted, open_connections=len(self._links),
                          commands_forwarded=counters.commands_forwarded,
                          errors_injected=counters.errors_injected, resets=counters.resets,
                          replies_cut=counters.replies_cut)

    def set_upstream(self, host: str, port: int) -> None:
        """Forward new connections to another store address (after a store restart)."""
        def change() -> None:
            self.upstream = (host, port)
        self._control(change)
        log.info("store proxy now forwards to %s:%d", host, port)

    def set_latency(self, latency_s: float) -> None:
        """Delay every request by ``latency_s`` before forwarding it; 0 switches it off."""
        if latency_s < 0:
            raise ValueError(f"latency_s must be >= 0, got {latency_s}")

        def change() -> None:
            self.rules.latency_s = latency_s
        self._control(change)
        log.info("store proxy latency set to %.0f ms", latency_s * 1000)

    def reset_connections(self) -> int:
        """Reset every open connection; return how many were reset."""
        count = self._control(self._reset_all)
        log.info("store proxy reset %d connections", count)
        return count

    def set_outage(self, outage: bool) -> int:
        """Start or end an outage: reset every connection, open and new, while it lasts.

        Returns the number of open connections reset when the outage starts.
        """
        def change() -> int:
            self.rules.outage = outage
            return self._reset_all() if outage else 0
        count = self._control(change)
        log.info("store proxy outage %s (%d connections reset)",
                 "started" if outage else "ended", count)
        return count

    def set_hanging(self, hanging: bool) -> int:
        """Start or end a hang: no byte is forwarded while it lasts.

        Ending the hang resets every connection that it held. Returns the number of
        connections hung (at the start) or reset (at the end).
        """
        def change() -> int:
            self.rules.hanging = hanging
            if hanging:
                for link in self._links:
                    link.hung = True
                return len(self._links)
            hung_links = [link for link in self._links if link.hung]
            for link in hung_links:
                link.reset()
            return len(hung_links)
        count = self._control(change)
        log.info("store proxy hang %s (%d connections)", "started" if hanging else "ended", count)
        return count

    def fail_commands(self, matches: Iterable[CommandMatch], message: str = DEFAULT_ERROR) -> None:
        """Reply ``-message`` to every command that matches, instead of forwarding it."""
        rules = tuple(matches)
        reply = error_reply(message)

        def change() -> None:
            self.rules.fail = rules
            self.rules.fail_reply = reply
        self._control(change)
        log.info("store proxy fails the commands %s with %r",
                 ", ".join(_describe(match) for match in rules) or "(none)", message)

    def reset_after_reply(self, match: CommandMatch | None, count: int = 1) -> None:
        """Forward the next ``count`` matching commands, then reset in place of each reply.

        ``None`` disarms it. Counting starts when this is called and goes over every
        connection.
        """
        if count < 0:
            raise ValueError(f"count must be >= 0, got {count}")

        def change() -> None:
            self.rules.reset_match = match
            self.rules.reset_remaining = count if match is not None else 0
        self._control(change)
        if match is not None:
            log.info("store proxy resets connections after the next %d replies to %s", count,
                     _describe(match))

    def reset_after_reply_remaining(self) -> int:
        """Return how many of the armed reply cuts have not happened yet."""
        return self._control(lambda: self.rules.reset_remaining)

    def clear_faults(self) -> None:
        """End every fault: no latency, outage, hang, command errors or reply cuts."""
        self.set_hanging(False)
        self.set_outage(False)

        def change() -> None:
            self.rules.latency_s = 0.0
            self.rules.fail = ()
            self.rules.reset_match = None
            self.rules.reset_remaining = 0
        self._control(change)

    def _reset_all(self) -> int:
        links = list(self._links)
        for link in links:
            link.reset()
        return len(links)

    def _control(self, change: Callable[[], T]) -> T:
        """Run ``change`` on the proxy's loop and return its result once it has run."""
        loop = self._loop
        if loop is None:
            raise ProxyError("the store proxy is not running; call start() first")

        async def apply() -> T:
            return change()

        try:
            return asyncio.run_coroutine_threadsafe(apply(), loop).result(CONTROL_TIMEOUT_S)
        except TimeoutError as error:
            raise ProxyError(f"the store proxy did not apply a change within "
                             f"{CONTROL_TIMEOUT_S:.0f} s") from error


def _describe(match: CommandMatch) -> str:
    if match.arg_contains is None:
        return match.name.upper()
    return f"{match.name.upper()} (with an argument containing {match.arg_contains!r})"
