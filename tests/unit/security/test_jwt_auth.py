"""verify_token: a valid token gives its principal, within the clock leeway; configuration errors;
decode_claims; VerifiedTokens remembering a verified token. Refusals: test_jwt_auth_refusals.py."""

from __future__ import annotations

import time
from typing import Any

import jwt
import pytest

from common.errors import Unauthorized
from security.jwt_auth import decode_claims, principal_from_claims, verify_token
from security.principals import Role
from tests.unit.security.jwt_tokens import (
    AUDIENCE,
    LEEWAY,
    OTHER_SECRET,
    SECRET,
    claims,
    encode,
    refused,
    verify,
)

# --- accepted -----------------------------------------------------------------------------------


def test_valid_token_gives_principal() -> None:
    principal = verify(encode(claims(roles=["user", "operator"], jti="tok-1")))
    assert principal.subject == "alice"
    assert principal.roles == frozenset({Role.USER, Role.OPERATOR})
    assert principal.token_id == "tok-1"


def test_unknown_claims_are_ignored() -> None:
    principal = verify(encode(claims(iss="someone", tenant="t-1", scope="a b", nested={"x": [1, 2]})))
    assert principal.subject == "alice"


def test_missing_roles_claim_means_user() -> None:
    assert verify(encode(claims(roles=None))).roles == frozenset({Role.USER})


def test_empty_roles_list_means_user() -> None:
    assert verify(encode(claims(roles=[]))).roles == frozenset({Role.USER})


def test_audience_list_containing_ours_is_accepted() -> None:
    assert verify(encode(claims(aud=["other-service", AUDIENCE]))).subject == "alice"


def test_token_without_jti_has_no_token_id() -> None:
    assert verify(encode(claims())).token_id is None


# --- clock skew ---------------------------------------------------------------------------------


def test_leeway_accepts_recently_expired_token() -> None:
    now = int(time.time())
    token = encode(claims(iat=now - 300, exp=now - 10))
    assert verify(token, leeway=30).subject == "alice"
    assert "expired" in refused(token, leeway=0)


def test_leeway_accepts_nbf_slightly_in_the_future() -> None:
    token = encode(claims(nbf=int(time.time()) + 10))
    assert verify(token, leeway=30).subject == "alice"
    assert "not yet valid" in refused(token, leeway=0)


def test_leeway_accepts_iat_slightly_in_the_future() -> None:
    token = encode(claims(iat=int(time.time()) + 10))
    assert verify(token, leeway=30).subject == "alice"


# --- configuration errors are not the caller's fault ---------------------------------------------


def test_empty_secret_is_a_configuration_error() -> None:
    with pytest.raises(ValueError, match="JWT_SECRET_KEY"):
        verify_token(encode(claims()), secret="", audience=AUDIENCE, leeway=LEEWAY)


def test_negative_leeway_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="leeway"):
        verify(encode(claims()), leeway=-1)


def test_decode_claims_returns_every_claim() -> None:
    token = encode(claims(tenant="t-1"))
    decoded = decode_claims(token, secret=SECRET, audience=AUDIENCE, leeway=LEEWAY)
    assert decoded["tenant"] == "t-1"
    assert principal_from_claims(decoded).subject == "alice"


# --- VerifiedTokens -----------------------------------------------------------------------------


def test_verified_tokens_verify_a_token_once_until_it_expires() -> None:
    from security.jwt_auth import VerifiedTokens

    now = [time.time()]
    tokens = VerifiedTokens(secret=SECRET, audience=AUDIENCE, leeway=5, size=2, clock=lambda: now[0])
    token = jwt.encode(
        {"sub": "alice", "roles": ["operator"], "aud": AUDIENCE, "iat": int(now[0]), "exp": int(now[0]) + 60},
        SECRET,
        algorithm="HS256",
    )
    first = tokens.verify(token)
    assert first.subject == "alice" and Role.OPERATOR in first.roles
    decoded: list[str] = []
    original = jwt.decode

    def counting(*args: Any, **kwargs: Any) -> Any:
        decoded.append("x")
        return original(*args, **kwargs)

    jwt.decode = counting  # type: ignore[assignment]
    try:
        assert tokens.verify(token) is first and decoded == []  # remembered: no second verification
        now[0] += 64  # past exp, within the leeway: still accepted
        assert tokens.verify(token) is first
        now[0] += 2  # past exp + leeway: verified again (PyJWT, on the real clock, then decides)
        tokens.verify(token)
        assert decoded == ["x"]
    finally:
        jwt.decode = original  # type: ignore[assignment]
    forged = jwt.encode(
        {"sub": "mallory", "aud": AUDIENCE, "iat": 1, "exp": 2**40}, OTHER_SECRET, algorithm="HS256"
    )
    for _ in range(2):  # a refused token is never remembered
        with pytest.raises(Unauthorized, match="signature"):
            tokens.verify(forged)
