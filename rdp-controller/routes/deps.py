"""What routes get from the running service: ``Annotated`` aliases of small ``Depends`` functions.

Routes see the caller (``Caller``, ``Operator``, ``Privileged``) and the services they call
(``SessionServices``, ``ServerServices``, ``ConnectionServices``), never the ``Runtime``: these
functions read it from app state, and nothing else.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request

from common.errors import Forbidden, Unauthorized, ValidationFailed
from security.connection_tokens import ConnectionTokenStore
from security.jwt_auth import parse_bearer
from security.principals import ANONYMOUS_DEV, Principal

from ..health import HealthReport
from ..health_monitor import HealthMonitor
from ..insights import Insights
from ..metrics import Metrics
from ..models import USER_ID_PATTERN
from ..runtime import Runtime
from ..schema_validator import SchemaValidator
from ..server_pool import ServerPool
from ..server_registry import ServerRegistry
from ..session_controller import SessionController
from ..session_creation import SessionCreation

USER_ID_RE = re.compile(USER_ID_PATTERN)


async def get_runtime(request: Request) -> Runtime:
    """``async`` on purpose: FastAPI runs a plain ``def`` dependency in its threadpool, on every request."""
    runtime: Runtime = request.app.state.runtime
    return runtime


async def get_principal(request: Request, runtime: Runtime = Depends(get_runtime)) -> Principal:
    """The authenticated caller (401 otherwise), rate limited per principal (429)."""
    settings = runtime.settings
    if not settings.RDP_CONTROLLER_AUTH_ENABLED:
        principal = ANONYMOUS_DEV
    else:
        if not settings.JWT_SECRET_KEY:
            raise Unauthorized(
                "authentication is on but the service has no JWT_SECRET_KEY: set it "
                "(or RDP_CONTROLLER_AUTH_ENABLED=false, development only)",
                code="AUTH_NOT_CONFIGURED",
            )
        # Verified once per token, then remembered until it expires (security.jwt_auth.VerifiedTokens).
        principal = runtime.verified_tokens.verify(parse_bearer(request.headers.get("authorization")))
    await runtime.rate_limiter.check(principal.subject)
    request.state.principal = principal
    return principal


async def require_operator(principal: Principal = Depends(get_principal)) -> Principal:
    if not principal.is_operator:
        raise Forbidden("this route needs the operator role", code="OPERATOR_REQUIRED")
    return principal


async def require_privileged(principal: Principal = Depends(get_principal)) -> Principal:
    if not principal.is_privileged:
        raise Forbidden("this route needs the operator or service role", code="PRIVILEGED_REQUIRED")
    return principal


def owner_of(principal: Principal) -> str | None:
    """The user whose sessions this principal may see; None means every user's."""
    return None if principal.is_privileged else principal.subject


def creator_of(principal: Principal, requested: str | None) -> str:
    """The user a create is for: a user creates for itself; a service or operator names the user."""
    if principal.is_privileged:
        if requested is None:
            raise ValidationFailed(
                "user_id: required when a service or operator creates", details={"field": "user_id"}
            )
        return requested
    if requested not in (None, principal.subject):
        raise Forbidden("user_id: a user creates sessions for itself only", details={"field": "user_id"})
    if not USER_ID_RE.fullmatch(principal.subject):
        raise ValidationFailed(
            "user_id: the token subject is not a valid user id", details={"field": "user_id"}
        )
    return principal.subject


@dataclass(frozen=True, slots=True)
class Sessions:
    sessions: SessionController
    creation: SessionCreation
    insights: Insights
    schemas: SchemaValidator


@dataclass(frozen=True, slots=True)
class Servers:
    servers: ServerRegistry
    pool: ServerPool
    monitor: HealthMonitor


@dataclass(frozen=True, slots=True)
class Connections:
    sessions: SessionController
    tokens: ConnectionTokenStore
    monitor: HealthMonitor
    monitor_loop: str | None  # this replica's health-monitor loop: leader, standby, ...


@dataclass(frozen=True, slots=True)
class System:
    health: HealthReport
    insights: Insights
    metrics: Metrics
    schemas: SchemaValidator


async def get_sessions(runtime: Annotated[Runtime, Depends(get_runtime)]) -> Sessions:
    return Sessions(runtime.sessions, runtime.creation, runtime.insights, runtime.schemas)


async def get_servers(runtime: Annotated[Runtime, Depends(get_runtime)]) -> Servers:
    return Servers(runtime.servers, runtime.pool, runtime.health_monitor)


async def get_connections(runtime: Annotated[Runtime, Depends(get_runtime)]) -> Connections:
    loop = runtime.background.states.get("health_monitor")
    status = loop.status if loop is not None else None
    return Connections(runtime.sessions, runtime.connection_tokens, runtime.health_monitor, status)


async def get_system(runtime: Annotated[Runtime, Depends(get_runtime)]) -> System:
    return System(runtime.health_report, runtime.insights, runtime.metrics, runtime.schemas)


Caller = Annotated[Principal, Depends(get_principal)]
SessionServices = Annotated[Sessions, Depends(get_sessions)]
ServerServices = Annotated[Servers, Depends(get_servers)]
ConnectionServices = Annotated[Connections, Depends(get_connections)]
SystemServices = Annotated[System, Depends(get_system)]
