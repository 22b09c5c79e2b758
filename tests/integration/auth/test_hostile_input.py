"""Hostile input in what a request says: every bad body field, path id, query parameter and header
is a 4xx whose message names the field, and nothing is written (the ``world`` fixture of
conftest.py counts the documents before and after). Bad JSON, oversized bodies and unknown routes:
test_hostile_input_transport.py.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest

from rdp_controller.config import RdpControllerSettings
from tests.integration.auth.refused_requests import (
    MAX_BODY,
    SERVERS,
    SESSIONS,
    UNKNOWN_ID,
    UPPER_ID,
    assert_refused,
)
from tests.support.app import OPERATOR, SERVICE

pytestmark = pytest.mark.integration


@pytest.fixture
def settings(settings_factory: Callable[..., RdpControllerSettings]) -> RdpControllerSettings:
    return settings_factory(RDP_CONTROLLER_MAX_BODY_BYTES=MAX_BODY)


SESSION_BODIES: list[tuple[str, dict[str, Any], str]] = [
    # unknown fields, at the top and nested
    ("unknown-field", {"user_id": "alice", "owner": "root"}, "owner"),
    ("unknown-nested", {"user_id": "alice", "session_config": {"shell": "/bin/sh"}}, "session_config.shell"),
    ("dunder-field", {"user_id": "alice", "__proto__": {"admin": True}}, "__proto__"),
    ("mongo-operator-field", {"user_id": "alice", "$where": "1"}, "$where"),
    # wrong types
    ("user-id-number", {"user_id": 42}, "user_id"),
    ("user-id-object", {"user_id": {"$ne": None}}, "user_id"),
    ("user-id-list", {"user_id": ["alice"]}, "user_id"),
    ("config-string", {"user_id": "alice", "session_config": "fullscreen"}, "session_config"),
    (
        "depth-string",
        {"user_id": "alice", "session_config": {"color_depth": "deep"}},
        "session_config.color_depth",
    ),
    (
        "depth-float",
        {"user_id": "alice", "session_config": {"color_depth": 24.5}},
        "session_config.color_depth",
    ),
    (
        "timeout-fraction",
        {"user_id": "alice", "session_config": {"idle_timeout": 1.5}},
        "session_config.idle_timeout",
    ),
    ("flag-word", {"user_id": "alice", "new_session": "perhaps"}, "new_session"),
    ("labels-list", {"user_id": "alice", "session_config": {"labels": ["gpu"]}}, "session_config.labels"),
    # out of range
    ("idle-zero", {"user_id": "alice", "session_config": {"idle_timeout": 0}}, "session_config.idle_timeout"),
    (
        "idle-negative",
        {"user_id": "alice", "session_config": {"idle_timeout": -5}},
        "session_config.idle_timeout",
    ),
    (
        "idle-huge",
        {"user_id": "alice", "session_config": {"idle_timeout": 10**12}},
        "session_config.idle_timeout",
    ),
    (
        "session-timeout-huge",
        {"user_id": "alice", "session_config": {"session_timeout": 30 * 86400 + 1}},
        "session_config.session_timeout",
    ),
    (
        "disconnect-timeout-zero",
        {"user_id": "alice", "session_config": {"disconnect_timeout": 0}},
        "session_config.disconnect_timeout",
    ),
    ("depth-7", {"user_id": "alice", "session_config": {"color_depth": 7}}, "session_config.color_depth"),
    (
        "resolution-small",
        {"user_id": "alice", "session_config": {"display_resolution": "320x200"}},
        "session_config.display_resolution",
    ),
    (
        "resolution-huge",
        {"user_id": "alice", "session_config": {"display_resolution": "99999x99999"}},
        "session_config.display_resolution",
    ),
    (
        "resolution-words",
        {"user_id": "alice", "session_config": {"display_resolution": "big"}},
        "session_config.display_resolution",
    ),
    (
        "resolution-negative",
        {"user_id": "alice", "session_config": {"display_resolution": "-1920x1080"}},
        "session_config.display_resolution",
    ),
    (
        "too-many-labels",
        {"user_id": "alice", "session_config": {"labels": {f"k{i}": "v" for i in range(33)}}},
        "session_config.labels",
    ),
    (
        "bad-label-key",
        {"user_id": "alice", "session_config": {"labels": {"$gt": "x"}}},
        "session_config.labels",
    ),
    # malformed ids and names in the body
    ("server-id-not-uuid", {"user_id": "alice", "server_id": "../../servers"}, "server_id"),
    ("server-id-upper", {"user_id": "alice", "server_id": UPPER_ID}, "server_id"),
    ("user-id-empty", {"user_id": ""}, "user_id"),
    ("user-id-injection", {"user_id": "alice'; DROP TABLE"}, "user_id"),
    ("user-id-nul", {"user_id": "ali\x00ce"}, "user_id"),
    ("user-id-long", {"user_id": "a" * 129}, "user_id"),
]


async def test_bad_create_session_bodies(client: httpx.AsyncClient, world: dict[str, Any]) -> None:
    for case, body, field in SESSION_BODIES:
        assert_refused(await client.post(SESSIONS, json=body, headers=SERVICE), field, case=case)


SERVER_BODIES: list[tuple[str, dict[str, Any], str]] = [
    ("unknown-field", {"name": "x1", "address": "10.0.0.9", "password": "pw"}, "password"),
    ("name-missing", {"address": "10.0.0.9"}, "name"),
    ("port-zero", {"name": "x1", "address": "10.0.0.9", "port": 0}, "port"),
    ("port-huge", {"name": "x1", "address": "10.0.0.9", "port": 70000}, "port"),
    ("port-string", {"name": "x1", "address": "10.0.0.9", "port": "rdp"}, "port"),
    ("capacity-zero", {"name": "x1", "address": "10.0.0.9", "capacity": 0}, "capacity"),
    ("weight-negative", {"name": "x1", "address": "10.0.0.9", "weight": -1}, "weight"),
    ("address-url", {"name": "x1", "address": "http://10.0.0.9/"}, "address"),
    ("address-broadcast", {"name": "x1", "address": "255.255.255.255"}, "address"),
    ("name-slash", {"name": "../etc", "address": "10.0.0.9"}, "name"),
    ("cert-not-hex", {"name": "x1", "address": "10.0.0.9", "pinned_cert_sha256": "zz"}, "pinned_cert_sha256"),
]


async def test_bad_register_server_bodies(client: httpx.AsyncClient, world: dict[str, Any]) -> None:
    for case, body, field in SERVER_BODIES:
        assert_refused(await client.post(SERVERS, json=body, headers=OPERATOR), field, case=case)


async def test_bad_update_bodies(client: httpx.AsyncClient, world: dict[str, Any]) -> None:
    server, session = f"{SERVERS}/{world['server_id']}", f"{SESSIONS}/{world['session_id']}"
    cases: list[tuple[str, str, dict[str, Any], dict[str, str], str]] = [
        ("PATCH", server, {"capacity": 0}, OPERATOR, "capacity"),
        ("PATCH", server, {"capacity": "ten"}, OPERATOR, "capacity"),
        ("PATCH", server, {"drain_deadline_seconds": -1}, OPERATOR, "drain_deadline_seconds"),
        ("PATCH", server, {"state": "available"}, OPERATOR, "state"),
        ("PATCH", server, {"weight": 1001}, OPERATOR, "weight"),
        ("PUT", f"{session}/status", {"status": "flying"}, SERVICE, "status"),
        ("PUT", f"{session}/status", {}, SERVICE, "status"),
        ("PUT", f"{session}/status", {"status": "terminated", "reason": "boredom"}, SERVICE, "reason"),
        ("PUT", f"{session}/status", {"status": "terminated", "version": 99}, SERVICE, "version"),
        ("POST", f"{session}/activity", {"bytes_in": -1}, SERVICE, "bytes_in"),
        ("POST", f"{session}/activity", {"bytes_out": 2**60}, SERVICE, "bytes_out"),
        ("POST", f"{session}/activity", {"bytes_in": "many"}, SERVICE, "bytes_in"),
        ("POST", f"{session}/activity", {"status": "active"}, SERVICE, "status"),
    ]
    for method, path, body, headers, field in cases:
        response = await client.request(method, path, json=body, headers=headers)
        assert_refused(response, field, case=f"{method} {path} {body}")


MALFORMED_IDS = [
    "not-a-uuid",
    "00000000-0000-4000-8000-00000000000",  # one digit short
    UPPER_ID,
    UNKNOWN_ID + "0",
    "%00",
    "..%2F..%2Fservers",
    "{$ne:null}",
    "x" * 300,
]


async def test_malformed_path_ids(client: httpx.AsyncClient, world: dict[str, Any]) -> None:
    for bad in MALFORMED_IDS:
        for method, path, headers in [
            ("GET", f"{SESSIONS}/{bad}", SERVICE),
            ("DELETE", f"{SESSIONS}/{bad}", SERVICE),
            ("POST", f"{SESSIONS}/{bad}/connect", SERVICE),
            ("GET", f"{SESSIONS}/{bad}/rdp", SERVICE),
            ("GET", f"{SESSIONS}/{bad}/events", SERVICE),
            ("PUT", f"{SESSIONS}/{bad}/status", SERVICE),
            ("GET", f"{SERVERS}/{bad}", OPERATOR),
            ("PATCH", f"{SERVERS}/{bad}", OPERATOR),
            ("DELETE", f"{SERVERS}/{bad}", OPERATOR),
            ("POST", f"{SERVERS}/{bad}/probe", OPERATOR),
        ]:
            body = {"status": "terminated"} if method == "PUT" else ({} if method == "PATCH" else None)
            response = await client.request(method, path, json=body, headers=headers)
            if response.status_code == 404 and "%2F" in bad:
                # An encoded slash can make another path: then it is no route, still with the error body.
                assert set(response.json()["error"]) == {"code", "message", "details"}, response.text
                continue
            field = "server_id" if path.startswith(SERVERS) else "session_id"
            assert_refused(response, field, case=f"{method} {path}")


MALFORMED_QUERIES: list[tuple[str, dict[str, str], str]] = [
    (SESSIONS, {"server_id": "not-a-uuid"}, "server_id"),
    (SESSIONS, {"server_id": UPPER_ID}, "server_id"),
    (SESSIONS, {"user_id": "alice bob"}, "user_id"),
    (SESSIONS, {"user_id": "$ne"}, "user_id"),
    (SESSIONS, {"status": "everything"}, "status"),
    (SESSIONS, {"limit": "0"}, "limit"),
    (SESSIONS, {"limit": "201"}, "limit"),
    (SESSIONS, {"limit": "ten"}, "limit"),
    (SESSIONS, {"cursor": "c" * 513}, "cursor"),
    ("/api/v1/connections", {"session_id": "x"}, "session_id"),
    ("/api/v1/connections", {"server_id": "1"}, "server_id"),
    ("/api/v1/connections", {"open_only": "sometimes"}, "open_only"),
    ("/api/v1/connections", {"limit": "-1"}, "limit"),
    (f"{SESSIONS}/{UNKNOWN_ID}/events", {"limit": "1001"}, "limit"),
]


async def test_malformed_query(client: httpx.AsyncClient, world: dict[str, Any]) -> None:
    for path, params, field in MALFORMED_QUERIES:
        response = await client.get(path, params=params, headers=SERVICE)
        assert_refused(response, field, case=f"{path} {params}")


async def test_malformed_cursor_is_refused(client: httpx.AsyncClient, world: dict[str, Any]) -> None:
    response = await client.get(SESSIONS, params={"cursor": "!!not-a-cursor!!"}, headers=SERVICE)
    assert 400 <= response.status_code < 500, response.text
    assert "cursor" in response.json()["error"]["message"]


async def test_force_must_be_boolean(client: httpx.AsyncClient, world: dict[str, Any]) -> None:
    response = await client.delete(
        f"{SERVERS}/{world['server_id']}", params={"force": "yes please"}, headers=OPERATOR
    )
    assert_refused(response, "force")


BAD_IDEMPOTENCY_KEYS = [
    "has space",
    "",
    "x" * 129,
    "semi;colon",
    "new\u00e9",
    'quote"d',
    "slash/key",
    "tab\tkey",
]


async def test_bad_idempotency_key(client: httpx.AsyncClient, world: dict[str, Any]) -> None:
    for key in BAD_IDEMPOTENCY_KEYS:
        headers: dict[str, str | bytes] = {**SERVICE, "Idempotency-Key": key.encode()}
        request = client.build_request("POST", SESSIONS, json={"user_id": "bob"}, headers=headers)
        error = assert_refused(await client.send(request), "Idempotency-Key", case=repr(key))
        assert error["details"]["field"] == "Idempotency-Key"
