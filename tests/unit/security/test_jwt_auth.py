"""verify_token / parse_bearer / mint_token: every refusal is an Unauthorized that names the problem."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt
import pytest

from common.errors import Unauthorized
from security.jwt_auth import (
    MAX_TOKEN_LENGTH,
    decode_claims,
    mint_token,
    parse_bearer,
    principal_from_claims,
    verify_token,
)
from security.principals import Role

# 64 characters: long enough for HS512 too, so PyJWT's short-key warning never fires.
SECRET = "unit-test-secret-0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJK"
OTHER_SECRET = "another-secret-0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLM"
AUDIENCE = "rdp-controller"
LEEWAY = 30


def claims(**overrides: Any) -> dict[str, Any]:
    now = int(time.time())
    base: dict[str, Any] = {"sub": "alice", "roles": ["user"], "aud": AUDIENCE, "iat": now, "exp": now + 300}
    base.update(overrides)
    return {key: value for key, value in base.items() if value is not None}


def encode(payload: dict[str, Any], *, secret: str = SECRET, algorithm: str = "HS256") -> str:
    return jwt.encode(payload, secret, algorithm=algorithm)


def verify(token: str, *, leeway: int = LEEWAY) -> Any:
    return verify_token(token, secret=SECRET, audience=AUDIENCE, leeway=leeway)


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64json(obj: dict[str, Any]) -> str:
    return b64url(json.dumps(obj, separators=(",", ":")).encode())


def refused(token: str, *, leeway: int = LEEWAY) -> str:
    """The Unauthorized message for ``token``; also checks that it does not echo the token."""
    with pytest.raises(Unauthorized) as caught:
        verify(token, leeway=leeway)
    message = caught.value.message
    assert caught.value.status_code == 401
    assert caught.value.code == "UNAUTHORIZED"
    if token:
        assert token not in message
        for segment in token.split("."):
            if len(segment) >= 8:
                assert segment not in message
    return message


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


# --- refused ------------------------------------------------------------------------------------


def test_no_token() -> None:
    assert "missing" in refused("")


@pytest.mark.parametrize(
    ("token", "expected"),
    [
        ("not-a-jwt", "three dot-separated segments"),
        ("abc.def", "malformed"),
        ("a.b.c", "malformed"),
        ("!!!!.@@@@.####", "malformed"),
        (f"{b64url(b'not json')}.{b64json({'sub': 'x'})}.sig", "header is not a JSON object"),
        ("eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9", "three dot-separated segments"),
    ],
)
def test_malformed_token(token: str, expected: str) -> None:
    assert expected in refused(token)


def test_signed_payload_that_is_not_an_object() -> None:
    signing_input = f"{b64json({'alg': 'HS256', 'typ': 'JWT'})}.{b64url(b'[1,2]')}"
    signature = hmac.new(SECRET.encode(), signing_input.encode(), hashlib.sha256).digest()
    assert "payload is not a JSON object" in refused(f"{signing_input}.{b64url(signature)}")


def test_overlong_token_is_refused_before_decoding() -> None:
    assert "longer than" in refused("a" * (MAX_TOKEN_LENGTH + 1))


def test_bad_signature() -> None:
    assert "signature is invalid" in refused(encode(claims(), secret=OTHER_SECRET))


def test_tampered_payload_fails_signature() -> None:
    header, _, signature = encode(claims()).split(".")
    forged = b64json(claims(roles=["operator"]))
    assert "signature is invalid" in refused(f"{header}.{forged}.{signature}")


def test_expired() -> None:
    now = int(time.time())
    assert "expired" in refused(encode(claims(iat=now - 600, exp=now - 120)))


def test_not_yet_valid_nbf() -> None:
    message = refused(encode(claims(nbf=int(time.time()) + 600)))
    assert "not yet valid" in message
    assert "nbf" in message


def test_issued_in_the_future() -> None:
    assert "issued in the future" in refused(encode(claims(iat=int(time.time()) + 600)))


def test_wrong_audience() -> None:
    message = refused(encode(claims(aud="some-other-service")))
    assert "audience" in message
    assert AUDIENCE in message


def test_audience_of_wrong_type() -> None:
    assert "'aud'" in refused(encode(claims(aud=123)))


def test_alg_none_is_refused() -> None:
    # Crafted by hand: PyJWT would not produce it for us with a key.
    token = f"{b64json({'alg': 'none', 'typ': 'JWT'})}.{b64json(claims())}."
    assert "algorithm" in refused(token)


def test_alg_none_with_a_signature_is_refused() -> None:
    token = f"{b64json({'alg': 'none', 'typ': 'JWT'})}.{b64json(claims())}.{b64url(b'x' * 32)}"
    assert "algorithm" in refused(token)


def test_hs512_with_the_same_secret_is_refused() -> None:
    token = encode(claims(), algorithm="HS512")
    assert "only HS256" in refused(token)


def test_rs256_header_signed_with_the_secret_is_refused() -> None:
    # The classic confusion attack: claim RS256 but sign with HMAC over the shared key.
    signing_input = f"{b64json({'alg': 'RS256', 'typ': 'JWT'})}.{b64json(claims())}"
    signature = hmac.new(SECRET.encode(), signing_input.encode(), hashlib.sha256).digest()
    assert "algorithm" in refused(f"{signing_input}.{b64url(signature)}")


def test_missing_alg_header_is_refused() -> None:
    signing_input = f"{b64json({'typ': 'JWT'})}.{b64json(claims())}"
    signature = hmac.new(SECRET.encode(), signing_input.encode(), hashlib.sha256).digest()
    assert "algorithm" in refused(f"{signing_input}.{b64url(signature)}")


@pytest.mark.parametrize("claim", ["sub", "exp", "iat", "aud"])
def test_missing_required_claim(claim: str) -> None:
    assert f"missing the required '{claim}' claim" in refused(encode(claims(**{claim: None})))


@pytest.mark.parametrize("sub", ["", "   "])
def test_empty_subject(sub: str) -> None:
    assert "'sub'" in refused(encode(claims(sub=sub)))


def test_non_string_subject() -> None:
    assert "'sub' must be a string" in refused(encode(claims(sub=42)))


def test_non_numeric_exp() -> None:
    assert "'exp' must be a number" in refused(encode(claims(exp="tomorrow")))


def test_non_numeric_iat() -> None:
    assert "'iat' must be a number" in refused(encode(claims(iat="today")))


def test_non_string_jti() -> None:
    assert "'jti'" in refused(encode(claims(jti=12)))


def test_unknown_role_is_refused() -> None:
    message = refused(encode(claims(roles=["user", "admin"])))
    assert "unknown roles" in message
    assert "'admin'" in message
    assert "operator, service, user" in message


@pytest.mark.parametrize("roles", ["user", {"user": True}, ["user", 3], 7])
def test_roles_must_be_a_list_of_names(roles: object) -> None:
    assert "'roles' must be a list of role names" in refused(encode(claims(roles=roles)))


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


# --- parse_bearer -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "header", ["Bearer abc.def.ghi", "bearer abc.def.ghi", "BEARER abc.def.ghi", "  Bearer \t abc.def.ghi  "]
)
def test_parse_bearer(header: str) -> None:
    assert parse_bearer(header) == "abc.def.ghi"


@pytest.mark.parametrize("header", [None, "", "   "])
def test_parse_bearer_missing(header: str | None) -> None:
    with pytest.raises(Unauthorized, match="missing bearer token"):
        parse_bearer(header)


@pytest.mark.parametrize(
    "header", ["Basic dXNlcjpzZWNyZXQ=", "Token dXNlcjpzZWNyZXQ=", "Digest dXNlcjpzZWNyZXQ="]
)
def test_parse_bearer_other_scheme(header: str) -> None:
    with pytest.raises(Unauthorized, match="only 'Bearer <token>'") as caught:
        parse_bearer(header)
    assert "dXNlcjpzZWNyZXQ" not in caught.value.message


@pytest.mark.parametrize(
    "header", ["Bearer", "Bearer   ", "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhIn0.c2ln", "Bearer two tokens"]
)
def test_parse_bearer_malformed(header: str) -> None:
    with pytest.raises(Unauthorized, match="Authorization header") as caught:
        parse_bearer(header)
    assert "eyJ" not in caught.value.message
    assert "tokens" not in caught.value.message


# --- mint_token ---------------------------------------------------------------------------------


def test_mint_round_trip() -> None:
    token = mint_token(
        secret=SECRET, subject="svc", roles=[Role.SERVICE, "operator"], audience=AUDIENCE, ttl_seconds=60
    )
    principal = verify(token)
    assert principal.subject == "svc"
    assert principal.roles == frozenset({Role.SERVICE, Role.OPERATOR})
    assert principal.token_id is not None
    decoded = decode_claims(token, secret=SECRET, audience=AUDIENCE, leeway=0)
    assert decoded["exp"] - decoded["iat"] == 60
    assert decoded["roles"] == ["operator", "service"]
    assert jwt.get_unverified_header(token)["alg"] == "HS256"


def test_mint_each_token_has_its_own_jti() -> None:
    kwargs: dict[str, Any] = {"secret": SECRET, "subject": "a", "roles": ["user"], "audience": AUDIENCE}
    first = verify(mint_token(**kwargs, ttl_seconds=60))
    second = verify(mint_token(**kwargs, ttl_seconds=60))
    assert first.token_id != second.token_id


def test_mint_not_before() -> None:
    later = datetime.now(UTC) + timedelta(minutes=10)
    token = mint_token(
        secret=SECRET, subject="a", roles=["user"], audience=AUDIENCE, ttl_seconds=3600, not_before=later
    )
    assert "not yet valid" in refused(token)
    epoch = mint_token(
        secret=SECRET,
        subject="a",
        roles=["user"],
        audience=AUDIENCE,
        ttl_seconds=60,
        not_before=time.time() - 5,
    )
    assert verify(epoch).subject == "a"


def test_mint_extra_claims_are_carried_and_ignored() -> None:
    token = mint_token(
        secret=SECRET, subject="a", roles=["user"], audience=AUDIENCE, ttl_seconds=60, extra={"tenant": "t-9"}
    )
    assert decode_claims(token, secret=SECRET, audience=AUDIENCE, leeway=0)["tenant"] == "t-9"


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"secret": "short"}, "at least 32"),
        ({"roles": ["admin"]}, "unknown role"),
        ({"subject": " "}, "subject"),
        ({"ttl_seconds": 0}, "ttl_seconds"),
        ({"extra": {"sub": "mallory", "exp": 1}}, "exp, sub"),
    ],
)
def test_mint_refuses_bad_arguments(overrides: dict[str, Any], message: str) -> None:
    kwargs: dict[str, Any] = {
        "secret": SECRET,
        "subject": "a",
        "roles": ["user"],
        "audience": AUDIENCE,
        "ttl_seconds": 60,
        **overrides,
    }
    with pytest.raises(ValueError, match=message):
        mint_token(**kwargs)


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
