"""API profiles shipped with the harness, and the token function of the reference service."""

from __future__ import annotations

from collections.abc import Mapping

from harness.profile import ProfileError
from service_under_test.auth import mint_token

REFERENCE_SECRET_ENV = "SCAN_SERVICE_TOKEN_SECRET"


def reference_token(user: str, app_env: Mapping[str, str]) -> str:
    """Mint a reference-service token for ``user`` with the run's secret from ``app_env``."""
    secret = app_env.get(REFERENCE_SECRET_ENV)
    if not secret:
        raise ProfileError(f"{REFERENCE_SECRET_ENV} is not set, and the reference service's "
                           "profile signs tokens with it; set it to the service's secret, "
                           "or pass your own service's profile with --profile")
    return mint_token(secret, user)
