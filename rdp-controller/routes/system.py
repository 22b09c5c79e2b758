"""System routes: ``/health``, ``/metrics`` (Prometheus text), ``/api/v1/metrics`` (JSON)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse, PlainTextResponse

from common.backends import ping_mongo, ping_redis

from .. import __version__
from ..insights import prometheus_text
from ..runtime import Runtime
from .deps import get_principal, get_runtime

router = APIRouter(tags=["system"])

SERVICE_NAME = "rdp-controller"


@router.get("/health")
async def health(runtime: Runtime = Depends(get_runtime)) -> JSONResponse:
    mongo, redis, integrations = await asyncio.gather(
        ping_mongo(runtime.mongo), ping_redis(runtime.redis), runtime.integrations.health_check_all()
    )
    mongodb = mongo.to_dict()
    if mongo.up:
        mongodb["indexes"] = "ready" if runtime.mongo_ready.is_set() else "pending"
    troubled_peers = any(peer["status"] in ("unhealthy", "circuit_open") for peer in integrations.values())
    if not mongo.up:
        status = "unhealthy"
    elif not redis.up or not runtime.mongo_ready.is_set() or troubled_peers:
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
            "redis": redis.to_dict(),
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
    return PlainTextResponse(
        prometheus_text(snapshot, runtime.metrics), media_type="text/plain; version=0.0.4"
    )


@router.get("/api/v1/metrics", dependencies=[Depends(get_principal)])
async def json_metrics(runtime: Runtime = Depends(get_runtime)) -> JSONResponse:
    snapshot = await runtime.insights.snapshot()
    runtime.schemas.check_response("metrics", snapshot)
    return JSONResponse(snapshot)
