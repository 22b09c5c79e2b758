"""Servers API (``/api/v1/servers``): the RDP host pool. Operators only."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query
from fastapi.encoders import jsonable_encoder
from fastapi.responses import JSONResponse

from ..models import ID_PATTERN
from ..server_registry import ServerCreate, ServerUpdate
from .deps import ServerServices, require_operator

router = APIRouter(prefix="/api/v1/servers", tags=["servers"], dependencies=[Depends(require_operator)])

ServerIdPath = Annotated[str, Path(pattern=ID_PATTERN, description="Server id (UUID)")]


def server_body(document: dict[str, Any]) -> dict[str, Any]:
    body: dict[str, Any] = jsonable_encoder(document)
    return body


@router.post("", status_code=201)
async def register_server(request: ServerCreate, services: ServerServices) -> JSONResponse:
    return JSONResponse(server_body(await services.servers.register(request)), status_code=201)


@router.get("")
async def list_servers(services: ServerServices) -> JSONResponse:
    return JSONResponse({"items": [server_body(s) for s in await services.servers.list()]})


@router.get("/{server_id}")
async def get_server(server_id: ServerIdPath, services: ServerServices) -> JSONResponse:
    return JSONResponse(server_body(await services.servers.get(server_id)))


@router.patch("/{server_id}")
async def update_server(
    server_id: ServerIdPath, request: ServerUpdate, services: ServerServices
) -> JSONResponse:
    return JSONResponse(server_body(await services.servers.update(server_id, request)))


@router.delete("/{server_id}")
async def remove_server(
    server_id: ServerIdPath,
    services: ServerServices,
    force: Annotated[bool, Query(description="Terminate live sessions (reason server_removed)")] = False,
) -> JSONResponse:
    terminated = await services.pool.remove_server(server_id, force=force)
    return JSONResponse({"server_id": server_id, "removed": True, "terminated_sessions": terminated})


@router.post("/{server_id}/probe")
async def probe_server(server_id: ServerIdPath, services: ServerServices) -> JSONResponse:
    """Probe now with the RDP protocol; the result is also stored on the server (``last_probe``)."""
    return JSONResponse(jsonable_encoder(await services.monitor.probe_server(server_id)))
