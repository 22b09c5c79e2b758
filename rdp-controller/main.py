"""
Lucid RDP Controller: the FastAPI application.

``create_app(settings)`` builds the app; its lifespan builds every client (``Runtime``) and
closes them on shutdown. The OpenAPI document served at ``/openapi.json`` and ``/docs`` is
``openapi.yaml`` beside this file, loaded as it is: ``make openapi`` generates it from the routes
and the models (``api_document.py``), and a test fails when the committed file differs.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import yaml
from fastapi import FastAPI

from common.log import setup_logging

from . import __version__
from .config import RdpControllerSettings, load_config
from .http_errors import install_error_handlers
from .middleware import BodySizeLimit, OptionsAllow
from .routes import ROUTERS
from .runtime import Runtime

logger = logging.getLogger(__name__)

OPENAPI_FILE = Path(__file__).with_name("openapi.yaml")


def load_openapi_schema(path: Path = OPENAPI_FILE) -> dict[str, Any] | None:
    """The OpenAPI document from ``openapi.yaml``; None (FastAPI's generated one) if unreadable."""
    try:
        with path.open(encoding="utf-8") as handle:
            schema = yaml.safe_load(handle)
    except (OSError, yaml.YAMLError) as exc:
        logger.warning("OpenAPI file %s unavailable, serving the generated document: %s", path, exc)
        return None
    if not isinstance(schema, dict) or "paths" not in schema:
        logger.warning("OpenAPI file %s holds no paths, serving the generated document", path)
        return None
    return schema


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    runtime = Runtime(app.state.settings)
    app.state.runtime = runtime
    await runtime.start()
    logger.info("rdp-controller %s started (%s)", __version__, runtime.settings.LUCID_ENV)
    try:
        yield
    finally:
        await runtime.stop()
        logger.info("rdp-controller stopped")


class QuietProbes(logging.Filter):
    """Drops uvicorn's access line of a successful ``GET /health`` or ``GET /metrics``.

    Load balancers, orchestrators and Prometheus ask every few seconds per replica: their lines
    would drown the log and cost more CPU than the answer itself. A failed probe is still logged.
    """

    PATHS = frozenset({"/health", "/metrics"})

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args  # uvicorn: (client, method, path with query, HTTP version, status)
        if isinstance(args, tuple) and len(args) == 5 and args[1] == "GET" and args[2] in self.PATHS:
            return not (isinstance(args[4], int) and args[4] < 400)
        return True


def quiet_probes() -> None:
    access = logging.getLogger("uvicorn.access")
    if not any(isinstance(known, QuietProbes) for known in access.filters):
        access.addFilter(QuietProbes())


def create_app(settings: RdpControllerSettings | None = None) -> FastAPI:
    """The application. Without ``settings`` the configuration is loaded and checked (``load_config``)."""
    if settings is None:
        settings = load_config().settings
    setup_logging(settings.LOG_LEVEL, secret=settings.JWT_SECRET_KEY or None)
    quiet_probes()
    app = FastAPI(
        title="Lucid RDP Controller",
        version=__version__,
        docs_url="/docs",
        redoc_url=None,
        lifespan=lifespan,
    )
    app.state.settings = settings
    openapi_schema = load_openapi_schema()
    if openapi_schema is not None:

        def custom_openapi() -> dict[str, Any]:
            return openapi_schema

        app.openapi = custom_openapi  # type: ignore[method-assign]
    install_error_handlers(app)
    app.add_middleware(OptionsAllow)
    app.add_middleware(BodySizeLimit, max_bytes=settings.RDP_CONTROLLER_MAX_BODY_BYTES)
    for router in ROUTERS:
        app.include_router(router)
    return app
