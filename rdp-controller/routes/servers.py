"""Servers API (``/api/v1/servers``): the RDP host pool. Operators only."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query
from fastapi.encoders import jsonable_encoder
from fastapi.responses import JSONResponse

from ..models import ID_PATTERN
from ..server_models import ProbeResult, Server, ServerCreate, ServerList, ServerRemoved, ServerUpdate
from .deps import ServerServices, require_operator
from .responses import errors

router = APIRouter(prefix="/api/v1/servers", tags=["servers"], dependencies=[Depends(require_operator)])

ServerIdPath = Annotated[str, Path(pattern=ID_PATTERN, description="Server id (UUID)")]


def server_body(document: dict[str, Any]) -> dict[str, Any]:
    body: dict[str, Any] = jsonable_encoder(document)
    return body


@router.post(
    "",
    status_code=201,
    summary="Register an RDP host (operator)",
    operation_id="registerServer",
    response_model=Server,
    response_description="Registered",
    responses=errors(401, 403, 409, 413, 422, 429),
)
async def register_server(request: ServerCreate, services: ServerServices) -> JSONResponse:
    return JSONResponse(server_body(await services.servers.register(request)), status_code=201)


@router.get(
    "",
    summary="List servers with their live load (operator)",
    operation_id="listServers",
    response_model=ServerList,
    response_description="Servers",
    responses=errors(401, 403, 429),
)
async def list_servers(services: ServerServices) -> JSONResponse:
    return JSONResponse({"items": [server_body(s) for s in await services.servers.list()]})


@router.get(
    "/{server_id}",
    summary="Get a server (operator)",
    operation_id="getServer",
    response_model=Server,
    response_description="The server",
    responses=errors(401, 403, 404, 422, 429),
)
async def get_server(server_id: ServerIdPath, services: ServerServices) -> JSONResponse:
    return JSONResponse(server_body(await services.servers.get(server_id)))


@router.patch(
    "/{server_id}",
    summary="Update capacity, weight, labels, drain or disable (operator)",
    operation_id="updateServer",
    response_model=Server,
    response_description="The server",
    responses=errors(401, 403, 404, 409, 413, 422, 429),
)
async def update_server(
    server_id: ServerIdPath, request: ServerUpdate, services: ServerServices
) -> JSONResponse:
    return JSONResponse(server_body(await services.servers.update(server_id, request)))


@router.delete(
    "/{server_id}",
    summary="Remove a server; with live sessions only with force=true, which terminates them (operator)",
    operation_id="removeServer",
    response_model=ServerRemoved,
    response_description="Removed",
    responses=errors(401, 403, 404, 409, 422, 429),
)
async def remove_server(
    server_id: ServerIdPath,
    services: ServerServices,
    force: Annotated[bool, Query(description="Terminate live sessions (reason server_removed)")] = False,
) -> JSONResponse:
    terminated = await services.pool.remove_server(server_id, force=force)
    return JSONResponse({"server_id": server_id, "removed": True, "terminated_sessions": terminated})


@router.post(
    "/{server_id}/probe",
    summary="Probe the server now with the RDP protocol (X.224 negotiation, then TLS) (operator)",
    operation_id="probeServer",
    response_model=ProbeResult,
    response_description="The probe result (also stored on the server)",
    responses=errors(401, 403, 404, 422, 429),
)
async def probe_server(server_id: ServerIdPath, services: ServerServices) -> JSONResponse:
    return JSONResponse(jsonable_encoder(await services.monitor.probe_server(server_id)))
