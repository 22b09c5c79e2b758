"""verify_token refuses: every refusal is an Unauthorized that names the problem and does not echo
the token (malformed, badly signed, expired, the wrong algorithm or audience, bad claims)."""

from __future__ import annotations

import hashlib
import hmac
import time

import pytest

from security.jwt_auth import MAX_TOKEN_LENGTH
from tests.unit.security.jwt_tokens import (
    AUDIENCE,
    OTHER_SECRET,
    SECRET,
    b64json,
    b64url,
    claims,
    encode,
    refused,
)

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
