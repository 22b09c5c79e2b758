"""System routes: ``/health``, ``/metrics`` (Prometheus text), ``/api/v1/metrics`` (JSON)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse, PlainTextResponse
from prometheus_client import CONTENT_TYPE_LATEST

from ..insights import prometheus_text
from ..system_models import Health, Metrics
from .deps import SystemServices, get_principal
from .responses import errors

router = APIRouter(tags=["system"])
PUBLIC: dict[str, Any] = {"security": []}  # no token needed


@router.get(
    "/health",
    summary="Service health (200 healthy or degraded, 503 when MongoDB is unreachable)",
    operation_id="health",
    response_model=Health,
    response_description="Healthy or degraded",
    responses={503: {"model": Health, "description": "Unhealthy (MongoDB unreachable)"}},
    openapi_extra=PUBLIC,
)
async def health(services: SystemServices) -> JSONResponse:
    """Answered from what this process's background checks last saw: MongoDB, Redis and every
    configured peer are checked every RDP_CONTROLLER_HEALTH_INTERVAL seconds, and each result
    carries its age (age_seconds). A request makes no backend or peer call, so polling it often
    costs them nothing; a change shows within one interval. `components.schemas` says whether the
    response schemas loaded (a schema that did not is off, never fatal)."""
    body, status_code = await services.health.build()
    services.schemas.validate_health_response(body)
    return JSONResponse(body, status_code=status_code)


@router.get(
    "/metrics",
    response_class=PlainTextResponse,
    summary="Prometheus metrics (text exposition format 0.0.4)",
    operation_id="prometheusMetrics",
    response_description="Metrics",
    openapi_extra=PUBLIC,
)
async def prometheus_metrics(services: SystemServices) -> PlainTextResponse:
    snapshot = await services.insights.snapshot()
    return PlainTextResponse(prometheus_text(snapshot, services.metrics), media_type=CONTENT_TYPE_LATEST)


@router.get(
    "/api/v1/metrics",
    dependencies=[Depends(get_principal)],
    summary="Service metrics as JSON (metrics-schema.json)",
    operation_id="jsonMetrics",
    response_model=Metrics,
    response_description="Metrics",
    responses=errors(401, 429),
)
async def json_metrics(services: SystemServices) -> JSONResponse:
    snapshot = await services.insights.snapshot()
    services.schemas.check_response("metrics", snapshot)
    return JSONResponse(snapshot)
