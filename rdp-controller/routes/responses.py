"""The error answers routes document: ``errors(401, 404, ...)`` for a route's ``responses=``.

Every error body is ``common.errors.ErrorBody``; each status says here, once, what it means.
"""

from __future__ import annotations

from typing import Any

from common.errors import ErrorBody

ERRORS: dict[int, dict[str, Any]] = {
    401: {
        "description": "No token, or a token that is malformed, expired, badly signed or for another audience"
    },
    403: {"description": "The token's roles do not allow this"},
    404: {"description": "No such resource (or not yours)"},
    409: {"description": "Not possible in the current state (details name the allowed targets)"},
    413: {"description": "Request body over the size limit"},
    422: {"description": "Bad input; the message names the field. Nothing was written."},
    429: {
        "description": "Too many requests from this principal",
        "headers": {"Retry-After": {"schema": {"type": "integer"}}},
    },
    503: {
        "description": (
            "The service cannot do this now; `code` says why: `NO_CAPACITY` (no free slot on any host that "
            "fits), `BACKEND_UNAVAILABLE` (MongoDB or Redis), `LEASES_REBUILDING` (a create while the slot "
            "leases are rebuilt from MongoDB after Redis lost them or MongoDB was away longer than a lease "
            "lives; seconds), `DEDICATED_UNAVAILABLE` (a dedicated server was asked for and "
            "rdp-server-manager is not configured or not usable: `RDP_SERVER_MANAGER_URL`), "
            "`DEDICATED_NO_CAPACITY` (rdp-server-manager could not provision one in time)."
        )
    },
}


def errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """The documented error answers of a route, with the one error body."""
    return {status: {"model": ErrorBody, **ERRORS[status]} for status in statuses}
