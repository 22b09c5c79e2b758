"""One-time connection tokens through the API: issued by connect, redeemed once by a service.

Every kind of unusable token (unknown, malformed, already used) is the same 401 ``TOKEN_INVALID``;
a request body the model refuses (empty, too long, not a string, missing, extra fields) is the
usual 422 - both documented for ``POST /api/v1/connections/redeem`` in openapi.yaml.
"""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest
import yaml
from fastapi import FastAPI

from rdp_controller.main import OPENAPI_FILE
from security.connection_tokens import hash_token
from tests.support.app import OPERATOR, SERVICE, auth, register_server

pytestmark = pytest.mark.integration

REDEEM = "/api/v1/connections/redeem"
ALICE = auth("alice", "user")
INVALID_MESSAGE = "connection token is invalid, expired or already used"


async def connect(client: httpx.AsyncClient) -> dict[str, Any]:
    server = await register_server(client)
    created = await client.post("/api/v1/sessions", json={"user_id": "alice"}, headers=SERVICE)
    assert created.status_code == 201, created.text
    session = created.json()
    connected = await client.post(f"/api/v1/sessions/{session['session_id']}/connect", headers=ALICE)
    assert connected.status_code == 200, connected.text
    descriptor: dict[str, Any] = connected.json()
    assert descriptor["server_id"] == server["server_id"]
    return descriptor


def assert_token_invalid(response: httpx.Response) -> None:
    assert response.status_code == 401, response.text
    assert response.headers["www-authenticate"].lower().startswith("bearer")
    assert response.json() == {"error": {"code": "TOKEN_INVALID", "message": INVALID_MESSAGE, "details": {}}}


async def test_connect_returns_a_one_time_token(client: httpx.AsyncClient) -> None:
    descriptor = await connect(client)
    token = descriptor["token"]
    assert token.startswith("rct_") and len(token) == 47
    assert token in descriptor["rdp_file"]

    redeemed = await client.post(REDEEM, json={"token": token}, headers=SERVICE)
    assert redeemed.status_code == 200, redeemed.text
    assert redeemed.json() == {
        "session_id": descriptor["session_id"],
        "connection_id": descriptor["connection_id"],
        "server_id": descriptor["server_id"],
        "user_id": "alice",
        "address": descriptor["address"],
        "port": descriptor["port"],
    }
    assert_token_invalid(await client.post(REDEEM, json={"token": token}, headers=SERVICE))
    assert_token_invalid(await client.post(REDEEM, json={"token": token}, headers=OPERATOR))


async def test_concurrent_redemptions_succeed_once(client: httpx.AsyncClient) -> None:
    token = (await connect(client))["token"]
    responses = await asyncio.gather(
        *(client.post(REDEEM, json={"token": token}, headers=SERVICE) for _ in range(8))
    )
    assert sorted(r.status_code for r in responses) == [200] + [401] * 7


async def test_each_connect_issues_a_new_token(client: httpx.AsyncClient) -> None:
    descriptor = await connect(client)
    sid = descriptor["session_id"]
    await client.post(f"/api/v1/sessions/{sid}/disconnect", headers=ALICE)
    again = await client.post(f"/api/v1/sessions/{sid}/reconnect", headers=ALICE)
    assert again.status_code == 200, again.text
    second = again.json()["token"]
    assert second != descriptor["token"]
    for token in (descriptor["token"], second):
        redeemed = await client.post(REDEEM, json={"token": token}, headers=SERVICE)
        assert redeemed.status_code == 200 and redeemed.json()["session_id"] == sid, redeemed.text


async def test_redis_holds_only_the_hash(app_client: tuple[FastAPI, httpx.AsyncClient]) -> None:
    app, client = app_client
    token = (await connect(client))["token"]
    redis = app.state.runtime.redis
    prefix = app.state.runtime.settings.RDP_CONTROLLER_REDIS_PREFIX
    keys = [key async for key in redis.scan_iter(match=f"{prefix}:*")]
    assert f"{prefix}:conntoken:{hash_token(token)}" in keys
    for key in keys:
        assert token not in key
        if await redis.type(key) == "string":
            assert token not in (await redis.get(key) or "")


@pytest.mark.parametrize(
    "garbage",
    [
        "garbage",
        "rct_" + "a" * 43,  # well-formed, never issued
        "rct_" + "a" * 42 + "!",
        "rct_short",
        "RCT_" + "a" * 43,
        "x" * 256,
        "eyJhbGciOiJIUzI1NiJ9.e30.c2ln",
        "../../etc/passwd",
        " rct_" + "a" * 43,
    ],
    ids=[
        "word",
        "unknown",
        "bad-char",
        "short",
        "upper-prefix",
        "max-length",
        "jwt",
        "path",
        "leading-space",
    ],
)
async def test_garbage_token_is_401(client: httpx.AsyncClient, garbage: str) -> None:
    assert_token_invalid(await client.post(REDEEM, json={"token": garbage}, headers=SERVICE))


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"token": ""}, "token"),
        ({"token": "x" * 257}, "token"),
        ({"token": 12345}, "token"),
        ({"token": None}, "token"),
        ({"token": ["rct_x"]}, "token"),
        ({}, "token"),
        ({"token": "rct_" + "a" * 43, "session_id": "x"}, "session_id"),
    ],
    ids=["empty", "too-long", "number", "null", "list", "missing", "extra-field"],
)
async def test_body_the_model_refuses_is_422(
    client: httpx.AsyncClient, body: dict[str, Any], field: str
) -> None:
    response = await client.post(REDEEM, json=body, headers=SERVICE)
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == "VALIDATION_ERROR"
    assert error["message"].startswith(f"{field}:"), error["message"]


def test_redeem_statuses_are_documented() -> None:
    spec = yaml.safe_load(OPENAPI_FILE.read_text(encoding="utf-8"))
    responses = spec["paths"][REDEEM]["post"]["responses"]
    for status in ("200", "401", "403", "413", "422", "429"):
        assert status in responses, f"openapi.yaml does not document {status} for POST {REDEEM}"
