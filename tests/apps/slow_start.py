"""An ASGI app whose workers start serving late once a flag file exists.

A worker reads ``SLOW_START_FLAG`` in its lifespan startup: when that file exists, it
waits ``SLOW_START_DELAY_S`` seconds before it serves, as a replacement worker on a busy
machine does. Every response is an empty 200; the harness's middleware names the worker.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable
from typing import Any

Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


async def app(scope: dict[str, Any], receive: Receive, send: Send) -> None:
    if scope["type"] == "lifespan":
        await _lifespan(receive, send)
        return
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-length", b"0")]})
    await send({"type": "http.response.body", "body": b""})


async def _lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            flag = os.environ.get("SLOW_START_FLAG", "")
            if flag and os.path.exists(flag):
                await asyncio.sleep(float(os.environ.get("SLOW_START_DELAY_S", "2")))
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return
