"""HTTP routes of the scan API under ``/api/v1/opportunities``, plus ``/healthz``.

Every scan route requires ``Authorization: Bearer <token>`` (see ``auth``) and returns 401
without a valid token. The routes only translate between HTTP and ``ScanService``.
"""

from __future__ import annotations

import logging
import os
from typing import Annotated

from fastapi import APIRouter, Depends, Header, HTTPException, Request, status
from fastapi.responses import JSONResponse

from service_under_test.auth import verify_token
from service_under_test.models import (
    DiscoverRequest,
    DiscoverResponse,
    HealthResponse,
    ResultsResponse,
    ScanningResultsResponse,
    StatusResponse,
)
from service_under_test.service import ScanService
from service_under_test.strategies import STRATEGY_IDS

logger = logging.getLogger(__name__)

PREFIX = "/api/v1/opportunities"

router = APIRouter()


def get_service(request: Request) -> ScanService:
    service: ScanService = request.app.state.service
    return service


def current_user(
    service: Annotated[ScanService, Depends(get_service)],
    authorization: Annotated[str | None, Header()] = None,
) -> str:
    """Return the user id of the request's bearer token, or raise 401."""
    scheme, _, token = (authorization or "").partition(" ")
    user = None
    if scheme.lower() == "bearer" and token.strip():
        user = verify_token(service.settings.token_secret, token.strip())
    if user is None:
        raise HTTPException(
            status_code=status.HTTP_401_UNAUTHORIZED,
            detail="missing or invalid bearer token; send Authorization: Bearer <token>",
            headers={"WWW-Authenticate": "Bearer"},
        )
    return user


Service = Annotated[ScanService, Depends(get_service)]
User = Annotated[str, Depends(current_user)]


@router.get("/healthz")
async def healthz() -> HealthResponse:
    return HealthResponse(worker_id=os.getpid())


@router.post(f"{PREFIX}/discover")
async def discover(
    service: Service, user: User, body: DiscoverRequest | None = None
) -> DiscoverResponse:
    """Start a scan in this worker and respond once its placeholder is stored."""
    request = body or DiscoverRequest()
    strategy_ids = list(request.strategy_ids or STRATEGY_IDS)
    started = await service.start_scan(user, strategy_ids, request.symbols)
    return DiscoverResponse(
        scan_id=started.scan_id,
        total_strategies=started.total_strategies,
        poll_url=f"{PREFIX}/status/{started.scan_id}",
        results_url=f"{PREFIX}/results/{started.scan_id}",
    )


@router.get(f"{PREFIX}/status/{{scan_id}}")
async def scan_status(scan_id: str, service: Service, user: User) -> StatusResponse:
    return await service.read_status(user, scan_id)


@router.get(
    f"{PREFIX}/results/{{scan_id}}",
    response_model=ResultsResponse,
    responses={
        202: {"model": ScanningResultsResponse, "description": "The scan is still running."},
        404: {"description": "No scan with this id belongs to the caller."},
    },
)
async def scan_results(
    scan_id: str, service: Service, user: User
) -> ResultsResponse | JSONResponse:
    response = await service.read_results(user, scan_id)
    if response is None:
        raise HTTPException(
            status_code=status.HTTP_404_NOT_FOUND, detail=f"scan {scan_id} not found"
        )
    if isinstance(response, ScanningResultsResponse):
        return JSONResponse(response.model_dump(mode="json"), status_code=status.HTTP_202_ACCEPTED)
    return response
