"""The paths and ids the hostile-input tests aim at, the body limit they run with, and
``assert_refused``: a 4xx with the standard error body whose message names the field."""

from __future__ import annotations

from typing import Any

import httpx

MAX_BODY = 2048
SESSIONS = "/api/v1/sessions"
SERVERS = "/api/v1/servers"
UNKNOWN_ID = "00000000-0000-4000-8000-000000000000"
UPPER_ID = "ABCDEF00-0000-4000-8000-00000000000A"  # a UUID, but ids are lower case


def assert_refused(response: httpx.Response, field: str, status: int = 422, case: str = "") -> dict[str, Any]:
    """A ``status`` with the standard error body whose message names ``field``."""
    assert response.status_code == status, (case, response.text)
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message", "details"}, (case, body)
    error: dict[str, Any] = body["error"]
    assert error["message"].startswith(f"{field}:") or f" {field}:" in error["message"], (case, field, error)
    if status == 422:
        assert error["code"] == "VALIDATION_ERROR", (case, error)
    return error
