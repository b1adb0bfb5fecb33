"""API profiles shipped with the harness, and the token function of the reference service."""

from __future__ import annotations

from collections.abc import Mapping

from service_under_test.auth import mint_token

REFERENCE_SECRET_ENV = "SCAN_SERVICE_TOKEN_SECRET"


def reference_token(user: str, app_env: Mapping[str, str]) -> str:
    """Mint a reference-service token for ``user`` with the run's secret from ``app_env``."""
    return mint_token(app_env[REFERENCE_SECRET_ENV], user)
