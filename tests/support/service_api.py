"""Driving a running service (a real process) over HTTP in end-to-end tests."""

from __future__ import annotations

import re
import uuid
from typing import Any

import httpx

from tests.support.app import TEST_SECRET, token
from tests.support.process import ServiceProcess, service_env, tracebacks

LOG_ERROR_RE = re.compile(r"^(ERROR:|CRITICAL:|\S+ \S+ (ERROR|CRITICAL) )", re.MULTILINE)

OPERATOR = {"Authorization": f"Bearer {token('ops', 'operator')}"}
SERVICE = {"Authorization": f"Bearer {token('session-api', 'service')}"}


def entrypoint_env(port: int, mongo_url: str, redis_url: str, **extra: str) -> dict[str, str]:
    """What compose would pass: port, backends, a database and key prefix of this test's own."""
    tag = uuid.uuid4().hex[:12]
    values = {
        "RDP_CONTROLLER_PORT": str(port),
        "LUCID_ENV": "development",
        "MONGODB_URL": mongo_url,
        "REDIS_URL": redis_url,
        "MONGODB_DATABASE": f"e2e_{tag}",
        "RDP_CONTROLLER_REDIS_PREFIX": f"e2e{tag}",
        "JWT_SECRET_KEY": TEST_SECRET,
        "RDP_CONTROLLER_REAPER_INTERVAL": "0.2",
        # RDP_CONTROLLER_CONFIG_FILE stays unset: the service reads config.yaml beside its code, as
        # in the image, and the environment above overrides it.
        "RDP_CONTROLLER_RELAY_PORT": "0",  # direct mode; the relay tests turn it on
    }
    return service_env(**{**values, **extra})


class Api:
    """A client of the running service; a wrong status fails with the answer and the service log."""

    def __init__(self, client: httpx.Client, service: ServiceProcess) -> None:
        self.client = client
        self.service = service

    def call(
        self, method: str, path: str, expect: int, headers: dict[str, str], **kwargs: Any
    ) -> httpx.Response:
        response = self.client.request(method, path, headers=headers, **kwargs)
        if response.status_code != expect:
            raise AssertionError(
                f"{method} {path}: expected {expect}, got {response.status_code} {response.text[:1000]}\n"
                + self.service.log_tail(40)
            )
        return response

    def json(self, method: str, path: str, expect: int, headers: dict[str, str], **kwargs: Any) -> Any:
        return self.call(method, path, expect, headers, **kwargs).json()


def transitions(api: Api, session_id: str, headers: dict[str, str]) -> list[tuple[Any, ...]]:
    events = api.json("GET", f"/api/v1/sessions/{session_id}/events", 200, headers)["items"]
    assert all(e["session_id"] == session_id for e in events)
    return [(e["from_status"], e["to_status"], e["reason"], e["actor"]) for e in events]


def assert_clean_log(log: str) -> None:
    found = tracebacks(log)
    assert not found, "traceback in the service log:\n" + "\n---\n".join(found)
    errors = [m.group(0) for m in LOG_ERROR_RE.finditer(log)]
    assert not errors, "ERROR lines in the service log:\n" + "\n".join(
        line for line in log.splitlines() if LOG_ERROR_RE.match(line)
    )
