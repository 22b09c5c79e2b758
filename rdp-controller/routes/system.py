"""System routes: ``/health``, ``/metrics`` (Prometheus text), ``/api/v1/metrics`` (JSON)."""

from __future__ import annotations

from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse, PlainTextResponse
from prometheus_client import CONTENT_TYPE_LATEST

from ..insights import prometheus_text
from .deps import SystemServices, get_principal

router = APIRouter(tags=["system"])


@router.get("/health")
async def health(services: SystemServices) -> JSONResponse:
    """What the ``health`` loop last saw (``health.py``): no backend or peer call per request."""
    body, status_code = await services.health.build()
    services.schemas.validate_health_response(body)
    return JSONResponse(body, status_code=status_code)


@router.get("/metrics", response_class=PlainTextResponse)
async def prometheus_metrics(services: SystemServices) -> PlainTextResponse:
    snapshot = await services.insights.snapshot()
    return PlainTextResponse(prometheus_text(snapshot, services.metrics), media_type=CONTENT_TYPE_LATEST)


@router.get("/api/v1/metrics", dependencies=[Depends(get_principal)])
async def json_metrics(services: SystemServices) -> JSONResponse:
    snapshot = await services.insights.snapshot()
    services.schemas.check_response("metrics", snapshot)
    return JSONResponse(snapshot)
