"""Connections API (``/api/v1/connections``): client connections of sessions, and token redemption."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query
from fastapi.encoders import jsonable_encoder
from fastapi.responses import JSONResponse

from ..connection_models import ConnectionList, ConnectionMetrics, PoolHealth, RedeemedToken, RedeemRequest
from ..models import ID_PATTERN, MAX_LIST_LIMIT
from .deps import ConnectionServices, require_privileged
from .responses import errors

router = APIRouter(
    prefix="/api/v1/connections", tags=["connections"], dependencies=[Depends(require_privileged)]
)


@router.get(
    "",
    summary="List client connections, newest first (operator or service)",
    operation_id="listConnections",
    response_model=ConnectionList,
    response_description="Connections",
    responses=errors(401, 403, 422, 429),
)
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


@router.get(
    "/health",
    summary="Health of the host pool (servers by state, reachability of their last probes) "
    "(operator or service)",
    operation_id="connectionsHealth",
    response_model=PoolHealth,
    response_description="Pool health",
    responses=errors(401, 403, 429),
)
async def pool_health(services: ConnectionServices) -> JSONResponse:
    body = await services.monitor.pool_health(services.monitor_loop)
    return JSONResponse(body)


@router.get(
    "/metrics",
    summary="Connection and pool figures (operator or service)",
    operation_id="connectionsMetrics",
    response_model=ConnectionMetrics,
    response_description="Figures",
    responses=errors(401, 403, 429),
)
async def connection_metrics(services: ConnectionServices) -> JSONResponse:
    return JSONResponse(jsonable_encoder(await services.monitor.connection_metrics()))


@router.post(
    "/redeem",
    summary="Exchange a one-time connection token for its session (works once) (operator or service)",
    operation_id="redeemConnectionToken",
    response_model=RedeemedToken,
    response_description="What the token was issued for",
    responses=errors(401, 403, 413, 422, 429, 503),
)
async def redeem_token(request: RedeemRequest, services: ConnectionServices) -> JSONResponse:
    """A token that is unknown, malformed, expired or already used is a 401 with code `TOKEN_INVALID`
    (the same answer for each, so a caller learns nothing about which). A body that is not
    `{"token": <string of 1 to 256 characters>}` is a 422.
    """
    return JSONResponse(jsonable_encoder(await services.tokens.redeem(request.token)))
