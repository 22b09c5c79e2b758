"""Servers API (``/api/v1/servers``): the RDP host pool. Operators only."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query
from fastapi.encoders import jsonable_encoder
from fastapi.responses import JSONResponse

from ..connection_manager import ServerCreate, ServerUpdate
from ..models import ID_PATTERN
from ..runtime import Runtime
from .deps import get_runtime, require_operator

RuntimeDep = Annotated[Runtime, Depends(get_runtime)]

router = APIRouter(prefix="/api/v1/servers", tags=["servers"], dependencies=[Depends(require_operator)])

ServerIdPath = Annotated[str, Path(pattern=ID_PATTERN, description="Server id (UUID)")]


def server_body(document: dict[str, Any]) -> dict[str, Any]:
    body: dict[str, Any] = jsonable_encoder(document)
    return body


@router.post("", status_code=201)
async def register_server(request: ServerCreate, runtime: RuntimeDep) -> JSONResponse:
    return JSONResponse(server_body(await runtime.connections.register(request)), status_code=201)


@router.get("")
async def list_servers(runtime: RuntimeDep) -> JSONResponse:
    return JSONResponse({"items": [server_body(s) for s in await runtime.connections.list()]})


@router.get("/{server_id}")
async def get_server(server_id: ServerIdPath, runtime: RuntimeDep) -> JSONResponse:
    return JSONResponse(server_body(await runtime.connections.get(server_id)))


@router.patch("/{server_id}")
async def update_server(server_id: ServerIdPath, request: ServerUpdate, runtime: RuntimeDep) -> JSONResponse:
    return JSONResponse(server_body(await runtime.connections.update(server_id, request)))


@router.delete("/{server_id}")
async def remove_server(
    server_id: ServerIdPath,
    runtime: RuntimeDep,
    force: Annotated[bool, Query(description="Terminate live sessions (reason server_removed)")] = False,
) -> JSONResponse:
    terminated = await runtime.pool.remove_server(server_id, force=force)
    return JSONResponse({"server_id": server_id, "removed": True, "terminated_sessions": terminated})


@router.post("/{server_id}/probe")
async def probe_server(server_id: ServerIdPath, runtime: RuntimeDep) -> JSONResponse:
    """Probe now with the RDP protocol; the result is also stored on the server (``last_probe``)."""
    return JSONResponse(jsonable_encoder(await runtime.health_monitor.probe_server(server_id)))
