"""Store retries: repeat a failed store call with exponential backoff within a time budget.

A store error is a redis connection error, a timeout or an error reply. A request retries
within ``store_retry_budget_s`` and then gets a 503 response. The scan runner retries its writes
for longer, because no client is waiting on them. A write whose reply was lost may already
have been applied, so every write the service retries is idempotent.

The redis client itself is built with retries switched off, so that this module alone
decides how often a call is repeated and logs each attempt.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Final, TypeVar

from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError, ResponseError, TimeoutError

logger = logging.getLogger(__name__)

T = TypeVar("T")

# NoScriptError is a ResponseError, but redis-py's registered scripts handle it by
# loading the script again, so it never reaches this module.
STORE_ERRORS: Final = (ConnectionError, TimeoutError, ResponseError)


class StoreUnavailableError(Exception):
    """A store call that still failed when its retry budget ran out."""

    def __init__(self, operation: str, attempts: int, cause: Exception) -> None:
        self.operation = operation
        self.attempts = attempts
        self.cause = cause
        super().__init__(
            f"store {operation} failed after {attempts} attempts: {type(cause).__name__}: {cause}"
        )


@dataclass(frozen=True)
class RetryPolicy:
    """How long and how often to retry a store call.

    The delay before retry n is ``min(cap_s, base_s * 2**n)``. ``max_attempts`` is the
    number of attempts whose delays fit in ``budget_s``. The budget is also enforced on
    the monotonic clock, so slow attempts use it up sooner.
    """

    budget_s: float
    base_s: float = 0.025
    cap_s: float = 0.25

    @property
    def max_attempts(self) -> int:
        backoff = self._backoff()
        attempts = 1
        waited_s = backoff.compute(1)
        while waited_s <= self.budget_s:
            attempts += 1
            waited_s += backoff.compute(attempts)
        return attempts

    def _backoff(self) -> ExponentialBackoff:
        return ExponentialBackoff(cap=self.cap_s, base=self.base_s)


async def call_with_retry(
    operation: str, call: Callable[[], Awaitable[T]], policy: RetryPolicy
) -> T:
    """Await ``call()`` and return its result, retrying store errors within the policy.

    Raises StoreUnavailableError when the last allowed attempt fails. Other exceptions
    propagate at once.
    """
    backoff = policy._backoff()
    max_attempts = policy.max_attempts
    deadline = time.monotonic() + policy.budget_s

    for attempt in range(1, max_attempts + 1):
        try:
            return await call()
        except STORE_ERRORS as error:
            delay_s = backoff.compute(attempt)
            out_of_budget = time.monotonic() + delay_s > deadline
            if attempt == max_attempts or out_of_budget:
                # The caller logs the final failure, because the consequence depends on the caller.
                raise StoreUnavailableError(operation, attempt, error) from error
            logger.warning(
                "store %s failed on attempt %d of %d (%s: %s); retrying in %.0f ms",
                operation,
                attempt,
                max_attempts,
                type(error).__name__,
                error,
                delay_s * 1000,
            )
            await asyncio.sleep(delay_s)

    raise AssertionError("unreachable: the last attempt either returns or raises")
