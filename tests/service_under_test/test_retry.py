"""Store retries within a time budget."""

from __future__ import annotations

import asyncio
import logging
import time

import pytest
from redis.exceptions import ConnectionError, ResponseError, TimeoutError

from service_under_test.retry import RetryPolicy, StoreUnavailableError, call_with_retry

pytestmark = pytest.mark.anyio


def test_max_attempts_fit_budget() -> None:
    # Delays are 50, 100, 200, 250, 250 ms: five retries fit in one second.
    assert RetryPolicy(1.0).max_attempts == 6
    assert RetryPolicy(0.04).max_attempts == 1


class FailingCall:
    """A store call that fails ``failures`` times, then returns "ok"."""

    def __init__(self, failures: int, error: Exception) -> None:
        self.failures = failures
        self.error = error
        self.calls = 0

    async def __call__(self) -> str:
        self.calls += 1
        if self.calls <= self.failures:
            raise self.error
        return "ok"


@pytest.mark.parametrize(
    "error", [ConnectionError("refused"), TimeoutError("timed out"), ResponseError("LOADING")]
)
async def test_retries_store_errors(error: Exception, caplog: pytest.LogCaptureFixture) -> None:
    call = FailingCall(2, error)

    with caplog.at_level(logging.WARNING, logger="service_under_test.retry"):
        result = await call_with_retry("scan read", call, RetryPolicy(1.0, base_s=0.001))

    assert result == "ok"
    assert call.calls == 3
    messages = [record.getMessage() for record in caplog.records]
    assert len(messages) == 2
    assert messages[0].startswith("store scan read failed on attempt 1 of ")
    assert "retrying in" in messages[0]


async def test_gives_up_after_max_attempts() -> None:
    policy = RetryPolicy(0.5, base_s=0.01, cap_s=0.1)
    call = FailingCall(1000, ConnectionError("refused"))

    with pytest.raises(StoreUnavailableError) as raised:
        await call_with_retry("scan read", call, policy)

    # The monotonic deadline may stop it one attempt early on a slow machine.
    assert policy.max_attempts - 1 <= call.calls <= policy.max_attempts
    assert raised.value.attempts == call.calls
    assert f"store scan read failed after {call.calls} attempts" in str(raised.value)
    assert isinstance(raised.value.cause, ConnectionError)


async def test_deadline_stops_slow_attempts() -> None:
    policy = RetryPolicy(0.2, base_s=0.001, cap_s=0.001)

    async def slow_failure() -> None:
        await asyncio.sleep(0.05)
        raise TimeoutError("timed out")

    started_at = time.monotonic()
    with pytest.raises(StoreUnavailableError) as raised:
        await call_with_retry("scan read", slow_failure, policy)

    assert raised.value.attempts < policy.max_attempts
    assert time.monotonic() - started_at < 0.5


async def test_other_errors_propagate_at_once() -> None:
    call = FailingCall(5, KeyError("bug"))

    with pytest.raises(KeyError):
        await call_with_retry("scan read", call, RetryPolicy(1.0))

    assert call.calls == 1
