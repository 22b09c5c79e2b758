"""No credential reaches the log: bearer tokens, connection tokens and the JWT secret.

The app calls ``common.log.setup_logging(level, secret=...)``, which puts the redaction filter on
the root logger's handlers. A capturing handler added *before* ``create_app`` is one of them, so
it sees exactly what the service's own log handler would write, at DEBUG (every library's debug
lines included).
"""

from __future__ import annotations

import io
import logging
from collections.abc import Callable, Iterator
from contextlib import AbstractAsyncContextManager

import httpx
import jwt
import pytest
from fastapi import FastAPI

from common.log import LOG_FORMAT
from rdp_controller.config import RdpControllerSettings
from security.redaction import REDACTED
from tests.support.app import TEST_SECRET, register_server, token

pytestmark = pytest.mark.integration

AppFactory = Callable[[RdpControllerSettings], AbstractAsyncContextManager[tuple[FastAPI, httpx.AsyncClient]]]


@pytest.fixture
def captured() -> Iterator[io.StringIO]:
    """A root handler writing to a buffer, present before the app configures logging."""
    root = logging.getLogger()
    previous_level = root.level
    buffer = io.StringIO()
    handler = logging.StreamHandler(buffer)
    handler.setFormatter(logging.Formatter(LOG_FORMAT))
    root.addHandler(handler)
    try:
        yield buffer
    finally:
        root.removeHandler(handler)
        root.setLevel(previous_level)


@pytest.fixture
def settings(settings_factory: Callable[..., RdpControllerSettings]) -> RdpControllerSettings:
    return settings_factory(LOG_LEVEL="DEBUG")


async def test_no_credential_in_the_log(
    captured: io.StringIO, settings: RdpControllerSettings, app_factory: AppFactory
) -> None:
    alice = token("alice", "user")
    service = token("session-api", "service")
    operator = token("ops", "operator")
    forged = jwt.encode({"sub": "mallory", "aud": "rdp-controller"}, "not-the-secret-" + "z" * 40)
    bearer_tokens = [alice, service, operator, forged]
    issued: list[str] = []

    async with app_factory(settings) as (_app, client):

        def as_(raw: str) -> dict[str, str]:
            return {"Authorization": f"Bearer {raw}"}

        await register_server(client)
        created = await client.post("/api/v1/sessions", json={}, headers=as_(alice))
        assert created.status_code == 201, created.text
        sid = created.json()["session_id"]
        connected = await client.post(f"/api/v1/sessions/{sid}/connect", headers=as_(alice))
        assert connected.status_code == 200, connected.text
        issued.append(connected.json()["token"])
        rdp = await client.get(f"/api/v1/sessions/{sid}/rdp", headers=as_(alice))
        assert rdp.status_code == 200, rdp.text
        await client.post(f"/api/v1/sessions/{sid}/disconnect", headers=as_(alice))
        reconnected = await client.post(f"/api/v1/sessions/{sid}/reconnect", headers=as_(alice))
        assert reconnected.status_code == 200, reconnected.text
        issued.append(reconnected.json()["token"])
        redeemed = await client.post(
            "/api/v1/connections/redeem", json={"token": issued[0]}, headers=as_(service)
        )
        assert redeemed.status_code == 200, redeemed.text
        reused = await client.post(
            "/api/v1/connections/redeem", json={"token": issued[0]}, headers=as_(service)
        )
        assert reused.status_code == 401
        assert (await client.get("/api/v1/sessions", headers=as_(forged))).status_code == 401
        assert (await client.get("/api/v1/sessions", headers={"Authorization": alice})).status_code == 401
        assert (await client.get("/api/v1/servers", headers=as_(alice))).status_code == 403
        assert (await client.get("/api/v1/servers", headers=as_(operator))).status_code == 200
        assert (await client.get("/api/v1/metrics", headers=as_(operator))).status_code == 200

        # A careless log line in the service's own namespace, in every shape: the handler redacts.
        careless = logging.getLogger("rdp_controller.careless")
        careless.warning("Authorization: Bearer %s", alice)
        careless.warning("issued %s for %s", issued[1], sid)
        careless.warning("settings %s", {"JWT_SECRET_KEY": TEST_SECRET, "token": service})
        careless.warning(
            "request", extra={"authorization": f"Bearer {operator}", "connection_token": issued[1]}
        )
        careless.warning("secret in text: %s", TEST_SECRET)

    output = captured.getvalue()
    assert "rdp-controller" in output and "started" in output, "the capture saw none of the app's log"
    assert "DEBUG" in output, "LOG_LEVEL=DEBUG did not reach the root logger"
    assert output.count(REDACTED) >= 5, "the careless lines were not redacted"
    for raw in bearer_tokens:
        assert raw not in output
        assert raw.split(".")[2] not in output, "a JWT signature leaked"
    for raw in issued:
        assert raw not in output
        assert raw.removeprefix("rct_") not in output
    assert TEST_SECRET not in output
    assert sid in output, "ids must stay readable"
