"""Hostile input in how a request is sent: bodies that are not a JSON object, bodies over the limit
(declared, lied about or streamed without a length), unknown routes and methods. Each is a 4xx with
the standard error body, and nothing is written (the ``world`` fixture of conftest.py).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest

from rdp_controller.config import RdpControllerSettings
from tests.integration.auth.refused_requests import MAX_BODY, SERVERS, SESSIONS, assert_refused
from tests.support.app import OPERATOR, SERVICE

pytestmark = pytest.mark.integration


@pytest.fixture
def settings(settings_factory: Callable[..., RdpControllerSettings]) -> RdpControllerSettings:
    return settings_factory(RDP_CONTROLLER_MAX_BODY_BYTES=MAX_BODY)


INVALID_JSON: list[tuple[str, bytes, str]] = [
    ("truncated", b'{"user_id": ', "application/json"),
    ("trailing-comma", b'{"user_id": "alice",}', "application/json"),
    ("single-quotes", b"{'user_id': 'alice'}", "application/json"),
    ("not-utf8", b'{"user_id": "\xff\xfe"}', "application/json"),
    ("nan", b"NaN", "application/json"),
    ("array", b"[]", "application/json"),
    ("string", b'"alice"', "application/json"),
    ("null", b"null", "application/json"),
    ("deep-nesting", b"[" * 1000 + b"]" * 1000, "application/json"),
    ("form", b"user_id=alice", "application/x-www-form-urlencoded"),
    ("text-plain", b'{"user_id": "alice"}', "text/plain"),
]


async def test_invalid_json(client: httpx.AsyncClient, world: dict[str, Any]) -> None:
    for case, content, content_type in INVALID_JSON:
        headers = {**SERVICE, "Content-Type": content_type}
        for method, path in [
            ("POST", SESSIONS),
            ("PUT", f"{SESSIONS}/{world['session_id']}/status"),
            ("POST", f"{SESSIONS}/{world['session_id']}/activity"),
        ]:
            if case == "null" and path.endswith("/activity"):
                continue  # the activity body is optional: JSON null is "no body"
            response = await client.request(method, path, content=content, headers=headers)
            assert_refused(response, "body", case=f"{case}: {method} {path}")


async def test_duplicate_keys_take_the_last(client: httpx.AsyncClient, world: dict[str, Any]) -> None:
    """Not an attack vector here: the model sees one value, validated like any other."""
    content = b'{"user_id": "alice", "user_id": "bad id"}'
    headers = {**SERVICE, "Content-Type": "application/json"}
    assert_refused(await client.post(SESSIONS, content=content, headers=headers), "user_id")


async def _chunks(total: int, size: int = 512) -> AsyncIterator[bytes]:
    sent = 0
    while sent < total:
        yield b" " * size
        sent += size


def assert_too_large(response: httpx.Response) -> None:
    assert response.status_code == 413, response.text
    assert response.json() == {
        "error": {
            "code": "PAYLOAD_TOO_LARGE",
            "message": f"request body is larger than {MAX_BODY} bytes",
            "details": {"max_bytes": MAX_BODY},
        }
    }


async def test_oversized_body_with_content_length(client: httpx.AsyncClient, world: dict[str, Any]) -> None:
    padding = "a" * MAX_BODY
    targets = [
        ("POST", SESSIONS, {"user_id": "alice", "pad": padding}, SERVICE),
        ("POST", SERVERS, {"name": "big", "address": "10.0.0.1", "labels": {"k": padding}}, OPERATOR),
        ("PATCH", f"{SERVERS}/{world['server_id']}", {"labels": {"k": padding}}, OPERATOR),
        ("POST", f"{SESSIONS}/{world['session_id']}/activity", {"pad": padding}, SERVICE),
        (
            "PUT",
            f"{SESSIONS}/{world['session_id']}/status",
            {"status": "terminated", "pad": padding},
            SERVICE,
        ),
        ("POST", "/api/v1/connections/redeem", {"token": padding}, SERVICE),
    ]
    for method, path, body, headers in targets:
        request = client.build_request(method, path, json=body, headers=headers)
        assert int(request.headers["content-length"]) > MAX_BODY
        assert_too_large(await client.send(request))


async def test_lying_content_length_is_refused(client: httpx.AsyncClient, world: dict[str, Any]) -> None:
    for declared in ("abc", "-1", str(MAX_BODY + 1), "1e9"):
        request = client.build_request("POST", SESSIONS, content=b"{}", headers=SERVICE)
        request.headers["Content-Length"] = declared
        request.headers["Content-Type"] = "application/json"
        assert_too_large(await client.send(request))


async def test_oversized_streamed_body_without_content_length(
    client: httpx.AsyncClient, world: dict[str, Any]
) -> None:
    targets = [
        ("POST", SESSIONS, SERVICE),
        ("POST", SERVERS, OPERATOR),
        ("PATCH", f"{SERVERS}/{world['server_id']}", OPERATOR),
        ("PUT", f"{SESSIONS}/{world['session_id']}/status", SERVICE),
        ("POST", "/api/v1/connections/redeem", SERVICE),
    ]
    for method, path, headers in targets:
        request = client.build_request(
            method,
            path,
            content=_chunks(MAX_BODY * 4),
            headers={**headers, "Content-Type": "application/json"},
        )
        assert "content-length" not in request.headers
        assert request.headers["transfer-encoding"] == "chunked"
        assert_too_large(await client.send(request))


async def test_streamed_body_under_the_limit_is_parsed(
    client: httpx.AsyncClient, world: dict[str, Any]
) -> None:
    async def body() -> AsyncIterator[bytes]:
        yield b'{"user_id": '
        yield b'"alice", "colour": 1}'

    request = client.build_request(
        "POST", SESSIONS, content=body(), headers={**SERVICE, "Content-Type": "application/json"}
    )
    assert_refused(await client.send(request), "colour")


async def test_unknown_route_and_method(client: httpx.AsyncClient, world: dict[str, Any]) -> None:
    missing = await client.get("/api/v1/sessionz", headers=SERVICE)
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "NOT_FOUND"
    wrong = await client.put(SESSIONS, json={}, headers=SERVICE)
    assert wrong.status_code == 405 and wrong.json()["error"]["code"] == "METHOD_NOT_ALLOWED"
