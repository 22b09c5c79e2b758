"""Small ``Depends`` functions: they read app state and the request, nothing else."""

from __future__ import annotations

from fastapi import Depends, Request

from common.errors import Forbidden, Unauthorized
from security.jwt_auth import parse_bearer
from security.principals import ANONYMOUS_DEV, Principal

from ..runtime import Runtime


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
