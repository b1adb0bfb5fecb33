"""Bearer tokens: a user id signed with HMAC-SHA256 under a secret shared by all workers.

A token is ``<user_id>.<hex digest>``. The harness mints tokens with ``mint_token`` and
the per-run secret, and every worker verifies them with the same secret, so any worker
accepts any token.
"""

from __future__ import annotations

import hashlib
import hmac


def _digest(secret: str, user_id: str) -> str:
    return hmac.new(secret.encode(), user_id.encode(), hashlib.sha256).hexdigest()


def mint_token(secret: str, user_id: str) -> str:
    """Return a bearer token for ``user_id`` signed with ``secret``."""
    if not user_id:
        raise ValueError("user_id must not be empty")
    return f"{user_id}.{_digest(secret, user_id)}"


def verify_token(secret: str, token: str) -> str | None:
    """Return the user id of a valid token, or None for an invalid one.

    The digest is compared in constant time. A user id may itself contain dots, because
    only the last dot separates the digest.
    """
    user_id, separator, digest = token.rpartition(".")
    if not separator or not user_id:
        return None
    if not hmac.compare_digest(_digest(secret, user_id), digest):
        return None
    return user_id
