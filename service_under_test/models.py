"""Request and response bodies of the scan API, as pydantic models."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from service_under_test.store import ScanStatus
from service_under_test.strategies import DEFAULT_SYMBOLS, StrategyId

# A symbol is a short ticker such as "BTC-USD". Commas are excluded because the seed of a
# strategy joins the symbols with commas.
Symbol = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._/-]{0,31}$")]

MAX_SYMBOLS = 20


class DiscoverRequest(BaseModel):
    """Body of ``POST /discover``. Every field is optional."""

    model_config = ConfigDict(extra="forbid")

    strategy_ids: Annotated[list[StrategyId], Field(min_length=1)] | None = None
    symbols: Annotated[list[Symbol], Field(min_length=1, max_length=MAX_SYMBOLS)] = Field(
        default_factory=lambda: list(DEFAULT_SYMBOLS)
    )
    # The service keeps no cache of opportunities, so there is nothing to bypass and the
    # flag is accepted without effect.
    force_refresh: bool = False

    @field_validator("strategy_ids", "symbols")
    @classmethod
    def _reject_duplicates(cls, values: list[str] | None) -> list[str] | None:
        if values is not None:
            duplicates = sorted({value for value in values if values.count(value) > 1})
            if duplicates:
                raise ValueError(f"duplicate entries {duplicates}; list each one once")
        return values


class DiscoverResponse(BaseModel):
    scan_id: str
    status: Literal["initiated"] = "initiated"
    total_strategies: int
    poll_url: str
    results_url: str


class Progress(BaseModel):
    strategies_completed: int
    total_strategies: int
    opportunities_found_so_far: int
    percentage: float


class StatusResponse(BaseModel):
    """Body of ``GET /status/{scan_id}``. ``progress`` is null for ``not_found``."""

    scan_id: str
    status: ScanStatus
    progress: Progress | None


class Opportunity(BaseModel):
    symbol: str
    side: Literal["buy", "sell"]
    expected_return: float


class ResultsEntry(BaseModel):
    strategy_id: str
    opportunities: list[Opportunity]


class ResultsResponse(BaseModel):
    """Body of a 200 ``GET /results/{scan_id}``: one entry per finished strategy."""

    scan_id: str
    status: Literal[ScanStatus.COMPLETE, ScanStatus.FAILED]
    results: list[ResultsEntry]


class ScanningResultsResponse(BaseModel):
    """Body of a 202 ``GET /results/{scan_id}`` while the scan is running."""

    scan_id: str
    status: Literal[ScanStatus.SCANNING] = ScanStatus.SCANNING
    progress: Progress


class HealthResponse(BaseModel):
    """Body of ``GET /healthz``: the pid of the worker that served the request."""

    worker_id: int
