"""What the cluster installs inside each gunicorn worker, around the unchanged app.

``install(worker)`` runs from gunicorn's ``post_worker_init`` hook, after the worker loaded
the app and before it serves. When the run has a virtual clock, it wraps the app so that
every request first syncs the worker's clock with the clock file; the response then
carries ``X-Harness-Clock-Seq``, the clock state the worker had applied, which is how the
harness knows that a move reached the worker. Background threads and asyncio tasks share
the process's patched clock, so they see a move as soon as one request synced it.

The same wrapper works for ASGI apps (UvicornWorker) and WSGI apps (gthread).

Every app also gets a wrapper that adds ``X-Worker-Id`` (the worker's pid) to each
response that does not carry it already, which is how the routing client tells workers
apart in an app that knows nothing of the harness.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from pathlib import Path
from typing import Any

from harness.clock_follower import ClockFollower, FreezegunDriver, make_driver
from harness.clock_state import CLOCK_DRIVER_ENV, CLOCK_FILE_ENV, real_monotonic_ns

log = logging.getLogger(__name__)

CLOCK_SEQ_HEADER = "X-Harness-Clock-Seq"
WORKER_ID_HEADER = "X-Worker-Id"

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
AsgiApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class AsgiClockSync:
    """ASGI middleware: sync the clock before each HTTP request, report the seq after.

    It also keeps the worker's heartbeat to the arbiter going from an asyncio task on the
    real clock. uvicorn only sends that heartbeat when ``time.time()`` shows enough time
    has passed, which never happens while virtual time is frozen, so the arbiter would
    kill every worker after ``--timeout`` seconds. A task, unlike a thread, stops when the
    event loop hangs, so a worker that really hangs is still killed.
    """

    def __init__(self, app: AsgiApp, follower: ClockFollower, worker: Any) -> None:
        self.app = app
        self.follower = follower
        self.worker = worker
        self._heartbeat: asyncio.Task[None] | None = None

    async def _beat(self) -> None:
        interval_s = max(float(self.worker.timeout) / 2, 0.1)
        while True:
            self.worker.notify()
            await asyncio.sleep(interval_s)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self._heartbeat is None:
            self._heartbeat = asyncio.get_running_loop().create_task(self._beat())
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        header = (CLOCK_SEQ_HEADER.lower().encode(), str(self.follower.sync()).encode())

        async def send_with_seq(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), header]}
            await send(message)

        await self.app(scope, receive, send_with_seq)


class WsgiClockSync:
    """WSGI middleware: sync the clock before each request, report the seq after."""

    def __init__(self, app: Callable[..., Iterable[bytes]], follower: ClockFollower) -> None:
        self.app = app
        self.follower = follower

    def __call__(self, environ: dict[str, Any],
                 start_response: Callable[..., Any]) -> Iterable[bytes]:
        seq = str(self.follower.sync())

        def start_with_seq(status: str, headers: list[tuple[str, str]],
                           exc_info: Any = None) -> Any:
            return start_response(status, [*headers, (CLOCK_SEQ_HEADER, seq)], exc_info)

        return self.app(environ, start_with_seq)


class AsgiWorkerId:
    """ASGI middleware: add ``X-Worker-Id`` to every HTTP response that lacks it."""

    def __init__(self, app: AsgiApp) -> None:
        self.app = app
        self._header = (WORKER_ID_HEADER.lower().encode(), str(os.getpid()).encode())

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                if not any(name.lower() == self._header[0] for name, _ in headers):
                    message = {**message, "headers": [*headers, self._header]}
            await send(message)

        await self.app(scope, receive, send_with_id)


class WsgiWorkerId:
    """WSGI middleware: add ``X-Worker-Id`` to every response that lacks it."""

    def __init__(self, app: Callable[..., Iterable[bytes]]) -> None:
        self.app = app
        self._pid = str(os.getpid())

    def __call__(self, environ: dict[str, Any],
                 start_response: Callable[..., Any]) -> Iterable[bytes]:
        def start_with_id(status: str, headers: list[tuple[str, str]],
                          exc_info: Any = None) -> Any:
            if not any(name.lower() == WORKER_ID_HEADER.lower() for name, _ in headers):
                headers = [*headers, (WORKER_ID_HEADER, self._pid)]
            return start_response(status, headers, exc_info)

        return self.app(environ, start_with_id)


def _is_asgi_worker(worker: Any) -> bool:
    return type(worker).__module__.startswith("uvicorn_worker")


def _notify_on_real_clock(worker: Any) -> None:
    """Keep the worker's heartbeat to the arbiter on the real monotonic clock.

    gunicorn's heartbeat stamps a file with ``time.monotonic()``, which freezegun fakes; a
    frozen stamp would make the arbiter kill the worker after ``--timeout`` seconds.
    """
    tmp = worker.tmp

    def notify() -> None:
        stamp = real_monotonic_ns() / 1e9
        os.utime(tmp.fileno(), (stamp, stamp))

    tmp.notify = notify


def install(worker: Any) -> None:
    """Wrap the worker's app so that its answers name the worker and it follows the run's
    virtual clock, if there is one."""
    if _is_asgi_worker(worker):
        worker.wsgi = AsgiWorkerId(worker.wsgi)
    else:
        worker.wsgi = WsgiWorkerId(worker.wsgi)
    clock_file = os.environ.get(CLOCK_FILE_ENV)
    if not clock_file:
        return
    driver = make_driver(os.environ.get(CLOCK_DRIVER_ENV, "time-machine"))
    if isinstance(driver, FreezegunDriver):
        _notify_on_real_clock(worker)
    follower = ClockFollower(Path(clock_file), driver)
    follower.sync()

    if _is_asgi_worker(worker):
        worker.wsgi = AsgiClockSync(worker.wsgi, follower, worker)
    else:
        worker.wsgi = WsgiClockSync(worker.wsgi, follower)
    worker.log.info("worker %d follows the virtual clock in %s (%s)", worker.pid, clock_file,
                    type(driver).__name__)
