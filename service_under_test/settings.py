"""Settings of one service worker, read from ``SCAN_SERVICE_*`` environment variables.

Every worker of a cluster reads the same environment, so all workers share one store,
key prefix, token secret, seed and fault set. Durations are in seconds of wall-clock time,
which the harness may fake (virtual time).
"""

from __future__ import annotations

from typing import Annotated, Self

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from service_under_test.faults import ActiveFaults, parse_fault_names


class Settings(BaseSettings):
    """Configuration of the scan service.

    Each field is read from the environment variable ``SCAN_SERVICE_<FIELD>``, for
    example ``SCAN_SERVICE_TOKEN_SECRET``.
    """

    model_config = SettingsConfigDict(env_prefix="SCAN_SERVICE_", frozen=True)

    redis_url: str = "redis://127.0.0.1:6379/0"
    key_prefix: Annotated[str, Field(min_length=1)] = "scan:"
    token_secret: Annotated[str, Field(min_length=1)]
    faults: Annotated[frozenset[str], NoDecode] = frozenset()
    seed: int = 0
    strategy_duration_s: Annotated[float, Field(ge=0)] = 0.07
    retention_s: Annotated[float, Field(gt=0)] = 600.0
    stale_s: Annotated[float, Field(gt=0)] = 30.0
    heartbeat_s: Annotated[float, Field(gt=0)] = 5.0
    store_retry_budget_s: Annotated[float, Field(gt=0)] = 1.0

    @field_validator("faults", mode="before")
    @classmethod
    def _parse_faults(cls, value: object) -> frozenset[str]:
        if isinstance(value, str):
            return parse_fault_names(value)
        if isinstance(value, (list, tuple, set, frozenset)):
            return parse_fault_names(str(item) for item in value)
        raise TypeError(f"faults must be a comma-separated string, got {type(value).__name__}")

    @model_validator(mode="after")
    def _check_heartbeat(self) -> Self:
        if self.heartbeat_s >= self.stale_s:
            raise ValueError(
                f"heartbeat_s ({self.heartbeat_s}) must be less than stale_s "
                f"({self.stale_s}), or every running scan would be reported failed; "
                f"lower SCAN_SERVICE_HEARTBEAT_S or raise SCAN_SERVICE_STALE_S"
            )
        return self

    @property
    def active_faults(self) -> ActiveFaults:
        return ActiveFaults(self.faults)

    @property
    def retention_ms(self) -> int:
        """Retention TTL in milliseconds, the unit of PEXPIRE and SET PX."""
        return max(1, round(self.retention_s * 1000))
