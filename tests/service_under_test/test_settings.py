"""Settings from SCAN_SERVICE_* environment variables, and their errors at startup."""

from __future__ import annotations

import os

import pytest

from service_under_test.app import SettingsError, create_app, load_settings
from service_under_test.faults import KNOWN


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in list(os.environ):
        if name.startswith("SCAN_SERVICE_"):
            monkeypatch.delenv(name)
    return monkeypatch


def test_defaults(clean_environment: pytest.MonkeyPatch) -> None:
    clean_environment.setenv("SCAN_SERVICE_TOKEN_SECRET", "s")

    settings = load_settings()

    assert settings.redis_url == "redis://127.0.0.1:6379/0"
    assert settings.key_prefix == "scan:"
    assert settings.faults == frozenset()
    assert settings.seed == 0
    assert settings.strategy_duration_s == 0.07
    assert settings.retention_s == 600
    assert settings.stale_s == 30
    assert settings.heartbeat_s == 5
    assert settings.store_retry_budget_s == 1.0
    assert settings.retention_ms == 600_000


def test_reads_environment(clean_environment: pytest.MonkeyPatch) -> None:
    env = {
        "SCAN_SERVICE_TOKEN_SECRET": "s",
        "SCAN_SERVICE_REDIS_URL": "redis://127.0.0.1:7000/1",
        "SCAN_SERVICE_KEY_PREFIX": "run7:",
        "SCAN_SERVICE_FAULTS": "no-owner-check, read-once-results",
        "SCAN_SERVICE_SEED": "42",
        "SCAN_SERVICE_STRATEGY_DURATION_S": "0.01",
        "SCAN_SERVICE_RETENTION_S": "60",
        "SCAN_SERVICE_STALE_S": "3",
        "SCAN_SERVICE_HEARTBEAT_S": "1",
        "SCAN_SERVICE_STORE_RETRY_BUDGET_S": "0.5",
    }
    for name, value in env.items():
        clean_environment.setenv(name, value)

    settings = load_settings()

    assert settings.redis_url == "redis://127.0.0.1:7000/1"
    assert settings.key_prefix == "run7:"
    assert settings.faults == {"no-owner-check", "read-once-results"}
    assert settings.active_faults.active("no-owner-check")
    assert settings.seed == 42
    assert settings.strategy_duration_s == 0.01
    assert settings.retention_s == 60
    assert settings.stale_s == 3
    assert settings.heartbeat_s == 1
    assert settings.store_retry_budget_s == 0.5


def test_unknown_fault_fails_at_startup(clean_environment: pytest.MonkeyPatch) -> None:
    clean_environment.setenv("SCAN_SERVICE_TOKEN_SECRET", "s")
    clean_environment.setenv("SCAN_SERVICE_FAULTS", "no-owner-check,lookup-typo")

    with pytest.raises(SettingsError) as raised:
        create_app()

    message = str(raised.value)
    assert "SCAN_SERVICE_FAULTS" in message
    assert "unknown fault 'lookup-typo'" in message
    for name in KNOWN:
        assert name in message


def test_missing_secret_names_variable(clean_environment: pytest.MonkeyPatch) -> None:
    with pytest.raises(SettingsError, match="SCAN_SERVICE_TOKEN_SECRET: Field required"):
        create_app()


def test_heartbeat_must_be_below_stale(clean_environment: pytest.MonkeyPatch) -> None:
    clean_environment.setenv("SCAN_SERVICE_TOKEN_SECRET", "s")
    clean_environment.setenv("SCAN_SERVICE_HEARTBEAT_S", "30")

    with pytest.raises(SettingsError, match=r"heartbeat_s \(30.0\) must be less than stale_s"):
        create_app()
