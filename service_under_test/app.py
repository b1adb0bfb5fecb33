"""The FastAPI app factory of the reference scan service.

gunicorn builds one app per worker with the factory syntax, for example::

    SCAN_SERVICE_TOKEN_SECRET=s gunicorn -k uvicorn_worker.UvicornWorker -w 4 \\
        --no-control-socket 'service_under_test.app:create_app()'

Settings come from ``SCAN_SERVICE_*`` environment variables unless passed in. Invalid
settings, such as an unknown fault name, raise SettingsError when the app is created, so
a worker fails to boot and gunicorn stops instead of serving a wrong configuration.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from urllib.parse import urlsplit, urlunsplit

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from pydantic import ValidationError
from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service_under_test import api
from service_under_test.retry import StoreUnavailableError
from service_under_test.service import ScanService
from service_under_test.settings import Settings

logger = logging.getLogger(__name__)

WORKER_ID_HEADER = "X-Worker-Id"
RETRY_AFTER_S = 1


class SettingsError(ValueError):
    """Invalid service settings, with one line per invalid environment variable."""


def load_settings() -> Settings:
    """Read Settings from the environment, naming the variable of each error."""
    try:
        return Settings()  # type: ignore[call-arg]  # required fields come from the environment
    except ValidationError as error:
        lines = []
        for problem in error.errors():
            field = ".".join(str(part) for part in problem["loc"])
            source = f"SCAN_SERVICE_{field.upper()}" if field else "settings"
            lines.append(f"  {source}: {problem['msg']}")
        raise SettingsError("invalid scan service settings:\n" + "\n".join(lines)) from error


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the scan service app. Its lifespan opens the store and stops running scans."""
    settings = settings or load_settings()
    service = ScanService(settings)

    app = FastAPI(title="reference scan service", lifespan=_lifespan)
    app.state.service = service
    app.include_router(api.router)
    app.add_exception_handler(StoreUnavailableError, _store_unavailable)
    app.add_middleware(WorkerIdMiddleware)
    return app


@asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    service: ScanService = app.state.service
    settings = service.settings
    await service.startup()
    logger.info(
        "worker %d serving scans: store %s, key prefix %r, faults [%s], seed %d",
        os.getpid(),
        redact_url(settings.redis_url),
        settings.key_prefix,
        ", ".join(sorted(settings.faults)),
        settings.seed,
    )
    try:
        yield
    finally:
        await service.shutdown()
        logger.info("worker %d stopped serving scans", os.getpid())


async def _store_unavailable(request: Request, error: Exception) -> JSONResponse:
    service: ScanService = request.app.state.service
    logger.error(
        "responding 503 to %s %s: %s; check that the store at %s is reachable",
        request.method,
        request.url.path,
        error,
        redact_url(service.settings.redis_url),
    )
    return JSONResponse(
        {"detail": "the store is unavailable; retry later"},
        status_code=503,
        headers={"Retry-After": str(RETRY_AFTER_S)},
    )


def redact_url(url: str) -> str:
    """Return ``url`` with any password replaced by ``***``, for logging."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


class WorkerIdMiddleware:
    """Add ``X-Worker-Id`` (this process's pid) to every response, and log each request.

    The middleware is also the last error boundary: an unhandled exception is logged and
    turned into a 500 response that carries the header too. Starlette's own 500 response would
    bypass this middleware and lose the header.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        started_at = time.monotonic()
        status_code = 0

        async def send_with_worker_id(message: Message) -> None:
            nonlocal status_code
            if message["type"] == "http.response.start":
                status_code = message["status"]
                MutableHeaders(scope=message).append(WORKER_ID_HEADER, str(os.getpid()))
            await send(message)

        try:
            await self.app(scope, receive, send_with_worker_id)
        except Exception:
            logger.exception("unhandled error in %s %s", scope["method"], scope["path"])
            if status_code:
                raise
            response = JSONResponse({"detail": "internal server error"}, status_code=500)
            await response(scope, receive, send_with_worker_id)
        finally:
            logger.debug(
                "%s %s -> %d in %.1f ms",
                scope["method"],
                scope["path"],
                status_code,
                (time.monotonic() - started_at) * 1000,
            )
