"""System routes: ``/health``, ``/metrics`` (Prometheus text), ``/api/v1/metrics`` (JSON)."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse, PlainTextResponse
from prometheus_client import CONTENT_TYPE_LATEST

from .. import __version__
from ..insights import prometheus_text
from ..runtime import Runtime
from .deps import get_principal, get_runtime

router = APIRouter(tags=["system"])

SERVICE_NAME = "rdp-controller"


@router.get("/health")
async def health(runtime: Runtime = Depends(get_runtime)) -> JSONResponse:
    """What the ``health`` loop last saw (``health.py``): no backend or peer call per request."""
    checks = runtime.health
    checked = await checks.latest()
    age = time.monotonic() - checked.at
    mongodb, redis = checks.backend(checked.mongodb, age), checks.backend(checked.redis, age)
    integrations = checks.integrations_with_age(checked, age)
    if mongodb["status"] == "up":
        mongodb["indexes"] = "ready" if runtime.mongo_ready.is_set() else "pending"
    troubled_peers = any(peer["status"] in ("unhealthy", "circuit_open") for peer in integrations.values())
    if mongodb["status"] != "up":
        status = "unhealthy"
    elif redis["status"] != "up" or not runtime.mongo_ready.is_set() or troubled_peers:
        status = "degraded"
    else:
        status = "healthy"
    body: dict[str, Any] = {
        "status": status,
        "service": SERVICE_NAME,
        "version": __version__,
        "timestamp": datetime.now(UTC).isoformat(),
        "environment": runtime.settings.LUCID_ENV,
        "auth_enabled": runtime.settings.RDP_CONTROLLER_AUTH_ENABLED,
        "components": {
            "mongodb": mongodb,
            "redis": redis,
            "background": runtime.background.summary(),
            "relay": runtime.relay.health(),
        },
        "integrations": integrations,
    }
    runtime.schemas.validate_health_response(body)
    return JSONResponse(body, status_code=503 if status == "unhealthy" else 200)


@router.get("/metrics", response_class=PlainTextResponse)
async def prometheus_metrics(runtime: Runtime = Depends(get_runtime)) -> PlainTextResponse:
    snapshot = await runtime.insights.snapshot()
    return PlainTextResponse(prometheus_text(snapshot, runtime.metrics), media_type=CONTENT_TYPE_LATEST)


@router.get("/api/v1/metrics", dependencies=[Depends(get_principal)])
async def json_metrics(runtime: Runtime = Depends(get_runtime)) -> JSONResponse:
    snapshot = await runtime.insights.snapshot()
    runtime.schemas.check_response("metrics", snapshot)
    return JSONResponse(snapshot)
