"""``Allow`` lists every method a path serves: on ``OPTIONS`` (204) and on a 405, for every route.

The expected methods come from the app's own route table (``app.routes``), grouped by path, so a
route added later is checked without touching this file. FastAPI makes one route per method, and
Starlette's 405 named only the methods of the first route of a path (``Allow: POST`` for
``/api/v1/servers``, which also serves GET), while ``OPTIONS`` itself was a 405.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import FastAPI
from fastapi.routing import iter_route_contexts

from rdp_controller.config import RdpControllerSettings
from rdp_controller.main import create_app

SOME_ID = "0b6c9c5e-4f0e-4c53-9d53-4f5f3b0e9a11"
PROBED = ("GET", "POST", "PUT", "PATCH", "DELETE")
PARAMETER_RE = re.compile(r"\{[^}]+\}")


def make_app() -> FastAPI:
    settings = RdpControllerSettings(LUCID_ENV="test", MONGODB_URL="mongodb://db:1", REDIS_URL="redis://r:1")
    return create_app(settings)


def route_table(app: FastAPI) -> dict[str, set[str]]:
    """Path template -> every method its routes serve, from the app's routes (included routers flattened)."""
    table: dict[str, set[str]] = {}
    for route in iter_route_contexts(app.routes):
        if route.methods and route.path:
            table.setdefault(route.path, set()).update(route.methods)
    return table


TABLE = route_table(make_app())


def allow_of(response: httpx.Response) -> list[str]:
    return [method.strip() for method in response.headers.get("allow", "").split(",") if method.strip()]


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    # No lifespan: answering OPTIONS and 405 needs only the route table, no backend and no token.
    transport = httpx.ASGITransport(app=make_app())
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
        yield http


def test_the_route_table_has_the_paths_the_issue_named() -> None:
    assert TABLE["/api/v1/servers"] >= {"GET", "POST"}
    assert TABLE["/api/v1/servers/{server_id}"] >= {"GET", "PATCH", "DELETE"}
    assert TABLE["/api/v1/sessions"] >= {"GET", "POST"}
    assert TABLE["/api/v1/sessions/{session_id}"] >= {"GET", "DELETE"}


@pytest.mark.parametrize("template", sorted(TABLE))
async def test_options_answers_204_with_every_method_of_the_path(
    client: httpx.AsyncClient, template: str
) -> None:
    path = PARAMETER_RE.sub(SOME_ID, template)
    response = await client.options(path)
    assert response.status_code == 204, response.text
    assert response.content == b""
    allow = allow_of(response)
    assert set(allow) == TABLE[template] | {"OPTIONS"}
    assert len(allow) == len(set(allow))


@pytest.mark.parametrize("template", sorted(TABLE))
async def test_a_method_the_path_does_not_serve_is_405_with_the_full_allow(
    client: httpx.AsyncClient, template: str
) -> None:
    path = PARAMETER_RE.sub(SOME_ID, template)
    expected = TABLE[template] | {"OPTIONS"}
    refused = [method for method in PROBED if method not in TABLE[template]]
    for method in refused:
        response = await client.request(method, path)
        assert response.status_code == 405, (method, path, response.text)
        assert set(allow_of(response)) == expected, (method, path)
        error = response.json()["error"]
        assert error["code"] == "METHOD_NOT_ALLOWED"
        assert set(error["details"]["allowed"]) == expected


async def test_options_on_a_path_nobody_serves_is_404(client: httpx.AsyncClient) -> None:
    response = await client.options("/api/v1/nothing-here")
    assert response.status_code == 404
    assert "allow" not in response.headers
