"""Connections API (``/api/v1/connections``): client connections of sessions, and token redemption."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query
from fastapi.encoders import jsonable_encoder
from fastapi.responses import JSONResponse
from pydantic import Field

from ..models import ID_PATTERN, MAX_LIST_LIMIT, StrictModel
from .deps import ConnectionServices, require_privileged

router = APIRouter(
    prefix="/api/v1/connections", tags=["connections"], dependencies=[Depends(require_privileged)]
)


class RedeemRequest(StrictModel):
    token: str = Field(min_length=1, max_length=256)


@router.get("")
async def list_connections(
    services: ConnectionServices,
    session_id: Annotated[str | None, Query(pattern=ID_PATTERN)] = None,
    server_id: Annotated[str | None, Query(pattern=ID_PATTERN)] = None,
    open_only: bool = False,
    limit: Annotated[int, Query(ge=1, le=MAX_LIST_LIMIT)] = 50,
) -> JSONResponse:
    filters: dict[str, object] = {}
    if session_id:
        filters["session_id"] = session_id
    if server_id:
        filters["server_id"] = server_id
    if open_only:
        filters["closed_at"] = None
    documents = await services.sessions.connection_records(filters, limit)
    return JSONResponse({"items": jsonable_encoder(documents)})


@router.get("/health")
async def pool_health(services: ConnectionServices) -> JSONResponse:
    """Servers by state and the reachability of their last probes; ``monitor`` is this replica's loop."""
    body = await services.monitor.pool_health(services.monitor_loop)
    return JSONResponse(body)


@router.get("/metrics")
async def connection_metrics(services: ConnectionServices) -> JSONResponse:
    return JSONResponse(jsonable_encoder(await services.monitor.connection_metrics()))


@router.post("/redeem")
async def redeem_token(request: RedeemRequest, services: ConnectionServices) -> JSONResponse:
    """Exchange a one-time connection token (from connect) for its session; works once."""
    return JSONResponse(jsonable_encoder(await services.tokens.redeem(request.token)))
