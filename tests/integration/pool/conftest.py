"""Fixtures of the server-pool integration tests: the OpenAPI contract as a validator, and helpers."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import pytest
import yaml
from fastapi import FastAPI
from jsonschema import Draft202012Validator

from rdp_controller.main import OPENAPI_FILE
from tests.support.app import auth

OPERATOR = auth("op", "operator")
SERVICE = auth("svc", "service")

SchemaCheck = Callable[[str, Any], None]


def _to_json_schema(node: Any) -> Any:
    """OpenAPI 3.0 schema objects as JSON Schema 2020-12 (nullable, boolean exclusiveMinimum, $ref)."""
    if isinstance(node, list):
        return [_to_json_schema(item) for item in node]
    if not isinstance(node, dict):
        return node
    out = {key: _to_json_schema(value) for key, value in node.items() if key not in ("nullable", "example")}
    if isinstance(out.get("$ref"), str):
        out["$ref"] = out["$ref"].replace("#/components/schemas/", "#/$defs/")
    if node.get("exclusiveMinimum") is True:
        out["exclusiveMinimum"] = out.pop("minimum")
    if node.get("nullable") is True:
        return {"anyOf": [out, {"type": "null"}]}
    return out


@pytest.fixture(scope="session")
def api_schema() -> SchemaCheck:
    """``check(name, body)``: the body matches ``components/schemas/<name>`` of openapi.yaml."""
    spec = yaml.safe_load(OPENAPI_FILE.read_text(encoding="utf-8"))
    definitions = _to_json_schema(spec["components"]["schemas"])

    def check(name: str, body: Any) -> None:
        schema = {"$defs": definitions, "$ref": f"#/$defs/{name}"}
        validator = Draft202012Validator(schema, format_checker=Draft202012Validator.FORMAT_CHECKER)
        problems = [
            f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(body)
        ]
        assert not problems, f"{name} does not match openapi.yaml: {problems}"

    return check


@pytest.fixture
def register() -> Callable[..., Awaitable[dict[str, Any]]]:
    """``await register(client, port=..., **fields)``: register a loopback server as an operator (201)."""

    async def _register(client: httpx.AsyncClient, *, port: int, **fields: Any) -> dict[str, Any]:
        body = {"name": f"rdp-{port}", "address": "127.0.0.1", "port": port, **fields}
        response = await client.post("/api/v1/servers", json=body, headers=OPERATOR)
        assert response.status_code == 201, response.text
        server: dict[str, Any] = response.json()
        return server

    return _register


async def monitor_started(app: FastAPI, timeout: float = 10.0) -> None:  # noqa: ASYNC109
    """Wait for the health monitor loop's first round, so a long probe interval keeps it quiet after."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state = app.state.runtime.background.states.get("health_monitor")
        if state is not None and state.rounds >= 1:
            return
        await asyncio.sleep(0.05)
    raise AssertionError("the health monitor loop did not run its first round")


@pytest.fixture
def quiet_monitor() -> Callable[[FastAPI], Awaitable[None]]:
    return monitor_started
