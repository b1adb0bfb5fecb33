"""Apps that report the time as a request handler, a background thread and a task see it.

``asgi_app`` (for UvicornWorker) and ``wsgi_app`` (for gthread) answer every request with
JSON: ``handler`` is ``time.time()`` in the handler, ``datetime`` and ``utcnow`` the same
instant through ``datetime``, ``thread`` the latest reading of a background thread that
samples ``time.time()`` every 20 ms, and, for the ASGI app, ``task`` the latest reading of
an asyncio task doing the same. Neither app knows about the harness.
"""

from __future__ import annotations

import asyncio
import datetime
import json
import os
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

SAMPLE_INTERVAL_S = 0.02
_readings: dict[str, float] = {}
_started: set[str] = set()
_lock = threading.Lock()


def _sample_in_thread() -> None:
    while True:
        _readings["thread"] = time.time()
        time.sleep(SAMPLE_INTERVAL_S)


async def _sample_in_task() -> None:
    while True:
        _readings["task"] = time.time()
        await asyncio.sleep(SAMPLE_INTERVAL_S)


def _start_thread_once() -> None:
    with _lock:
        if "thread" not in _started:
            _started.add("thread")
            threading.Thread(target=_sample_in_thread, daemon=True).start()


def _body() -> bytes:
    now = datetime.datetime.now()
    return json.dumps({
        "handler": time.time(),
        "datetime": now.timestamp(),
        "utcnow": datetime.datetime.utcnow().replace(tzinfo=datetime.UTC).timestamp(),
        **_readings,
    }).encode()


async def asgi_app(scope: dict[str, Any], receive: Callable[..., Any],
                   send: Callable[..., Any]) -> None:
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    _start_thread_once()
    if "task" not in _started:
        _started.add("task")
        asyncio.get_running_loop().create_task(_sample_in_task())
    body = _body()
    await send({"type": "http.response.start", "status": 200, "headers": [
        (b"content-type", b"application/json"), (b"x-worker-id", str(os.getpid()).encode())]})
    await send({"type": "http.response.body", "body": body})


def wsgi_app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    _start_thread_once()
    body = _body()
    start_response("200 OK", [("Content-Type", "application/json"),
                              ("Content-Length", str(len(body))),
                              ("X-Worker-Id", str(os.getpid()))])
    return [body]
