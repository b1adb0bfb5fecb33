"""Bearer tokens: minting and verifying."""

from __future__ import annotations

import pytest

from service_under_test.auth import mint_token, verify_token


def test_token_round_trip() -> None:
    token = mint_token("secret", "alice")

    assert token.startswith("alice.")
    assert verify_token("secret", token) == "alice"


def test_token_with_dotted_user_id() -> None:
    token = mint_token("secret", "alice.smith")

    assert verify_token("secret", token) == "alice.smith"


@pytest.mark.parametrize(
    "token",
    [
        "",
        "alice",
        ".abc",
        "alice.",
        "alice.0123",
        mint_token("other-secret", "alice"),
        mint_token("secret", "alice").replace("alice.", "bob.", 1),
    ],
)
def test_invalid_token_rejected(token: str) -> None:
    assert verify_token("secret", token) is None


def test_mint_rejects_empty_user_id() -> None:
    with pytest.raises(ValueError, match="user_id must not be empty"):
        mint_token("secret", "")
