"""Authentication: every protected route refuses a missing or bad bearer token with 401.

Each refusal carries the standard error body and a ``WWW-Authenticate: Bearer`` challenge; the
public routes (``/health``, ``/metrics``, ``/docs``, ``/openapi.json``) need no token.
"""

from __future__ import annotations

import base64
import json
import time
from typing import Any

import httpx
import jwt
import pytest

from tests.support.app import TEST_SECRET, auth, token

pytestmark = pytest.mark.integration

PROTECTED = "/api/v1/sessions"
OTHER_SECRET = "another-secret-" + "y" * 40


def _b64(data: dict[str, Any]) -> str:
    raw = json.dumps(data, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _claims(**overrides: Any) -> dict[str, Any]:
    now = int(time.time())
    return {
        "sub": "alice",
        "roles": ["user"],
        "aud": "rdp-controller",
        "iat": now,
        "exp": now + 600,
        **overrides,
    }


def _unsigned(claims: dict[str, Any]) -> str:
    """A hand-crafted ``alg: none`` token: header and payload, empty signature."""
    return f"{_b64({'alg': 'none', 'typ': 'JWT'})}.{_b64(claims)}."


def _expired() -> str:
    now = int(time.time())
    # Well beyond the 30 s leeway.
    return jwt.encode(_claims(iat=now - 7200, exp=now - 3600), TEST_SECRET, algorithm="HS256")


def _wrong_audience() -> str:
    return jwt.encode(_claims(aud="another-service"), TEST_SECRET, algorithm="HS256")


def _bad_signature() -> str:
    return jwt.encode(_claims(), OTHER_SECRET, algorithm="HS256")


def _tampered() -> str:
    """A valid token whose payload was swapped for one naming more roles: the signature no longer fits."""
    header, _payload, signature = token("alice", "user").split(".")
    return f"{header}.{_b64(_claims(roles=['operator']))}.{signature}"


def _hs512() -> str:
    """Signed with the right secret but another HMAC algorithm (64-byte key: no PyJWT warning)."""
    return jwt.encode(_claims(), TEST_SECRET + TEST_SECRET, algorithm="HS512")


def assert_unauthorized(response: httpx.Response, *message_parts: str) -> dict[str, Any]:
    assert response.status_code == 401, response.text
    assert response.headers["www-authenticate"].lower().startswith("bearer")
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"error"}
    error: dict[str, Any] = body["error"]
    assert set(error) == {"code", "message", "details"}
    assert error["code"] == "UNAUTHORIZED"
    assert isinstance(error["message"], str) and error["message"]
    assert isinstance(error["details"], dict)
    for part in message_parts:
        assert part in error["message"], error["message"]
    return error


async def test_no_token(client: httpx.AsyncClient) -> None:
    assert_unauthorized(await client.get(PROTECTED), "missing bearer token")


@pytest.mark.parametrize(
    "header",
    [
        "",
        "Bearer",
        "Bearer ",
        "Basic YWxpY2U6c2VjcmV0",
        "Bearer a b",
        "Token abc.def.ghi",
    ],
    ids=["empty", "scheme-only", "scheme-space", "basic", "three-parts", "other-scheme"],
)
async def test_malformed_authorization_header(client: httpx.AsyncClient, header: str) -> None:
    assert_unauthorized(await client.get(PROTECTED, headers={"Authorization": header}))


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("not-a-jwt", "malformed"),
        ("a.b", "malformed"),
        ("!!!.@@@.###", "malformed"),
        ("bm90LWpzb24.eyJzdWIiOiJ4In0.c2ln", "malformed"),
        ("x" * 9000, "malformed"),
    ],
    ids=["garbage", "two-segments", "not-base64", "header-not-json", "oversized"],
)
async def test_malformed_token(client: httpx.AsyncClient, raw: str, message: str) -> None:
    response = await client.get(PROTECTED, headers={"Authorization": f"Bearer {raw}"})
    error = assert_unauthorized(response, message)
    assert raw not in error["message"]


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (_bad_signature, "signature is invalid"),
        (_tampered, "signature is invalid"),
        (_expired, "expired"),
        (_wrong_audience, "wrong audience"),
        (lambda: _unsigned(_claims()), "algorithm is not accepted"),
        (lambda: _unsigned(_claims(roles=["operator", "service"])), "algorithm is not accepted"),
        (_hs512, "algorithm is not accepted"),
        (lambda: jwt.encode({"sub": "alice", "aud": "rdp-controller"}, TEST_SECRET), "missing the required"),
        (lambda: jwt.encode(_claims(roles=["superuser"]), TEST_SECRET), "unknown roles"),
        (lambda: jwt.encode(_claims(nbf=int(time.time()) + 3600), TEST_SECRET), "not yet valid"),
    ],
    ids=[
        "bad-signature",
        "tampered-payload",
        "expired",
        "wrong-audience",
        "alg-none",
        "alg-none-privileged",
        "hs512",
        "missing-exp-iat",
        "unknown-role",
        "not-before-future",
    ],
)
async def test_bad_token(client: httpx.AsyncClient, make: Any, message: str) -> None:
    raw = make()
    response = await client.get(PROTECTED, headers={"Authorization": f"Bearer {raw}"})
    error = assert_unauthorized(response, message)
    assert raw not in json.dumps(error)


async def test_every_protected_route_needs_a_token(client: httpx.AsyncClient) -> None:
    some_id = "00000000-0000-4000-8000-000000000000"
    routes = [
        ("GET", "/api/v1/metrics"),
        ("GET", "/api/v1/sessions"),
        ("POST", "/api/v1/sessions"),
        ("GET", f"/api/v1/sessions/{some_id}"),
        ("DELETE", f"/api/v1/sessions/{some_id}"),
        ("POST", f"/api/v1/sessions/{some_id}/connect"),
        ("GET", f"/api/v1/sessions/{some_id}/rdp"),
        ("POST", f"/api/v1/sessions/{some_id}/disconnect"),
        ("POST", f"/api/v1/sessions/{some_id}/reconnect"),
        ("POST", f"/api/v1/sessions/{some_id}/activity"),
        ("PUT", f"/api/v1/sessions/{some_id}/status"),
        ("GET", f"/api/v1/sessions/{some_id}/events"),
        ("GET", f"/api/v1/sessions/{some_id}/metrics"),
        ("GET", f"/api/v1/sessions/{some_id}/health"),
        ("GET", "/api/v1/servers"),
        ("POST", "/api/v1/servers"),
        ("GET", f"/api/v1/servers/{some_id}"),
        ("PATCH", f"/api/v1/servers/{some_id}"),
        ("DELETE", f"/api/v1/servers/{some_id}"),
        ("POST", f"/api/v1/servers/{some_id}/probe"),
        ("GET", "/api/v1/connections"),
        ("POST", "/api/v1/connections/redeem"),
        ("GET", "/api/v1/connections/health"),
        ("GET", "/api/v1/connections/metrics"),
    ]
    for method, path in routes:
        response = await client.request(method, path)
        assert_unauthorized(response)
        bad = await client.request(method, path, headers={"Authorization": f"Bearer {_expired()}"})
        assert_unauthorized(bad, "expired")


async def test_public_routes_need_no_token(client: httpx.AsyncClient) -> None:
    health = await client.get("/health")
    assert health.status_code == 200, health.text
    assert health.json()["auth_enabled"] is True
    metrics = await client.get("/metrics")
    assert metrics.status_code == 200, metrics.text
    assert metrics.headers["content-type"].startswith("text/plain")
    docs = await client.get("/docs")
    assert docs.status_code == 200, docs.text
    assert "text/html" in docs.headers["content-type"]
    spec = await client.get("/openapi.json")
    assert spec.status_code == 200, spec.text
    assert "/api/v1/sessions" in spec.json()["paths"]


async def test_public_routes_ignore_a_bad_token(client: httpx.AsyncClient) -> None:
    """A stale token sent out of habit must not break health checks or scraping."""
    headers = {"Authorization": f"Bearer {_expired()}"}
    assert (await client.get("/health", headers=headers)).status_code == 200
    assert (await client.get("/metrics", headers=headers)).status_code == 200


async def test_valid_token_works(client: httpx.AsyncClient) -> None:
    response = await client.get(PROTECTED, headers=auth("alice", "user"))
    assert response.status_code == 200, response.text
    assert response.json() == {"items": [], "next_cursor": None}
    assert "www-authenticate" not in response.headers


async def test_scheme_is_case_insensitive_and_unknown_claims_are_ignored(client: httpx.AsyncClient) -> None:
    raw = jwt.encode(_claims(department="finance", nested={"a": [1, 2]}), TEST_SECRET, algorithm="HS256")
    response = await client.get(PROTECTED, headers={"Authorization": f"bearer {raw}"})
    assert response.status_code == 200, response.text


async def test_token_without_roles_is_a_user(client: httpx.AsyncClient) -> None:
    raw = jwt.encode({k: v for k, v in _claims().items() if k != "roles"}, TEST_SECRET, algorithm="HS256")
    headers = {"Authorization": f"Bearer {raw}"}
    assert (await client.get(PROTECTED, headers=headers)).status_code == 200
    servers = await client.get("/api/v1/servers", headers=headers)
    assert servers.status_code == 403, servers.text
