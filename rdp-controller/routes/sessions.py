"""Sessions API (``/api/v1/sessions``): thin handlers over ``SessionController``."""

from __future__ import annotations

import re
from typing import Annotated, Any

from fastapi import APIRouter, Body, Header, Path, Query, Request
from fastapi.encoders import jsonable_encoder
from fastapi.responses import JSONResponse, Response

from common.errors import ValidationFailed
from security.principals import Principal

from ..models import (
    CURSOR_PATTERN,
    ID_PATTERN,
    MAX_LIST_LIMIT,
    USER_ID_PATTERN,
    ActivityRequest,
    ConnectionDescriptor,
    CreateSessionRequest,
    Session,
    SessionEventList,
    SessionHealth,
    SessionMetrics,
    SessionPage,
    SessionStatus,
    StatusUpdateRequest,
    TerminationReason,
)
from ..schema_validator import SchemaValidator
from .deps import Caller, SessionServices, creator_of, owner_of
from .responses import errors

router = APIRouter(prefix="/api/v1/sessions", tags=["sessions"])

IDEMPOTENCY_KEY_RE = re.compile(r"^[A-Za-z0-9_.:-]{1,128}$")
SessionIdPath = Annotated[str, Path(pattern=ID_PATTERN, description="Session id (UUID)")]
Document = dict[str, Any]
# The cursors the service issues, or empty (the first page); decode_cursor refuses the others.
LIST_CURSOR_PATTERN = f"^({CURSOR_PATTERN[1:-1]})?$"


class RdpFileResponse(Response):
    media_type = "application/x-rdp"


def checked(schemas: SchemaValidator, body: Any, definition: str, status_code: int = 200) -> JSONResponse:
    """The answer, checked against its definition in session-schema.json (a break is logged and
    counted, never refused)."""
    schemas.check_response("session", body, definition=definition)
    return JSONResponse(body, status_code=status_code)


def session_body(
    schemas: SchemaValidator, document: Document, status_code: int = 200, **extra: Any
) -> JSONResponse:
    body = Session.from_document(document, **extra).model_dump(mode="json", exclude_none=False)
    if body.get("reconnected") is None:
        body.pop("reconnected")
    return checked(schemas, body, "Session", status_code)


def actor_of(principal: Principal) -> str:
    return principal.subject


@router.post(
    "",
    status_code=201,
    summary="Create a session (or return the one an Idempotency-Key or a suspended session names)",
    operation_id="createSession",
    response_model=Session,
    response_description="Created",
    responses={
        202: {
            "model": Session,
            "description": "Creating - its dedicated server is being provisioned (poll the session)",
        },
        200: {
            "model": Session,
            "description": "The session this Idempotency-Key created before, "
            "or a reconnected suspended session",
        },
        **errors(401, 403, 404, 409, 413, 422, 429, 503),
    },
)
async def create_session(
    request: CreateSessionRequest,
    services: SessionServices,
    principal: Caller,
    idempotency_key: str | None = Header(
        default=None, alias="Idempotency-Key", json_schema_extra={"pattern": IDEMPOTENCY_KEY_RE.pattern}
    ),
) -> JSONResponse:
    """A `user` creates for itself (`user_id` may be omitted); `service` and `operator` name the `user_id`.
    When the user has a suspended session with the same resolution, colour depth and labels, it is
    reconnected and returned with `reconnected: true` (200), unless `new_session` is true.
    An `Idempotency-Key` returns the first answer's session, whatever path the first request took
    (new, reconnected), on any replica; a request that arrives while the first is still under way
    waits for it (409 `IDEMPOTENCY_KEY_IN_PROGRESS` after a few backend timeouts).
    With `dedicated_server` and no warm server free, the session is `creating` (202) while its
    server is provisioned, then `ready`, or `error` (with `error_detail` saying why) after a failure or
    RDP_CONTROLLER_PROVISION_TIMEOUT.
    """
    if idempotency_key is not None and not IDEMPOTENCY_KEY_RE.fullmatch(idempotency_key):
        raise ValidationFailed(
            "Idempotency-Key: 1 to 128 characters of A-Z a-z 0-9 _ . : -",
            details={"field": "Idempotency-Key"},
        )
    user_id = creator_of(principal, request.user_id)
    document, created = await services.creation.create(
        request, user_id=user_id, idempotency_key=idempotency_key, actor=actor_of(principal)
    )
    # 202: on a dedicated server still being provisioned, the session is "creating" (then ready or error).
    status_code = (202 if document["status"] == SessionStatus.CREATING.value else 201) if created else 200
    return session_body(services.schemas, document, status_code, reconnected=document.get("reconnected"))


@router.get(
    "",
    summary="List sessions, newest first (a user sees its own only)",
    operation_id="listSessions",
    response_model=SessionPage,
    response_description="A page of sessions",
    responses=errors(401, 422, 429),
)
async def list_sessions(
    services: SessionServices,
    principal: Caller,
    user_id: Annotated[str | None, Query(pattern=USER_ID_PATTERN)] = None,
    status: SessionStatus | None = None,
    server_id: Annotated[str | None, Query(pattern=ID_PATTERN)] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_LIST_LIMIT)] = 50,
    cursor: Annotated[
        str | None,
        Query(
            max_length=512,
            description="`next_cursor` of the previous page, as it is: the position after that page's last "
            "session (empty: the first page)",
            json_schema_extra={"pattern": LIST_CURSOR_PATTERN},
        ),
    ] = None,
) -> JSONResponse:
    owner = owner_of(principal)
    if owner is not None and user_id not in (None, owner):
        return JSONResponse({"items": [], "next_cursor": None})
    filters = {
        "user_id": owner or user_id,
        "status": status.value if status else None,
        "server_id": server_id,
    }
    documents, following = await services.sessions.page(filters=filters, limit=limit, cursor=cursor)
    body = {
        "items": [
            Session.from_document(d).model_dump(mode="json", exclude={"reconnected"}) for d in documents
        ],
        "next_cursor": following,
    }
    return checked(services.schemas, body, "SessionPage")


@router.get(
    "/{session_id}",
    summary="Get a session",
    operation_id="getSession",
    response_model=Session,
    response_description="The session",
    responses=errors(401, 404, 422, 429),
)
async def get_session(
    session_id: SessionIdPath,
    services: SessionServices,
    principal: Caller,
) -> JSONResponse:
    return session_body(services.schemas, await services.sessions.get(session_id, owner=owner_of(principal)))


@router.delete(
    "/{session_id}",
    summary="Terminate a session (idempotent; a final session is returned as it is)",
    operation_id="terminateSession",
    response_model=Session,
    response_description="The terminated session",
    responses=errors(401, 404, 409, 422, 429),
)
async def terminate_session(
    session_id: SessionIdPath,
    services: SessionServices,
    principal: Caller,
) -> JSONResponse:
    reason = TerminationReason.USER_REQUEST if owner_of(principal) else TerminationReason.ADMIN
    document = await services.sessions.terminate(
        session_id, owner=owner_of(principal), reason=reason, actor=actor_of(principal)
    )
    return session_body(services.schemas, document)


@router.post(
    "/{session_id}/connect",
    summary="Where to connect and a one-time token (a ready, active or idle session)",
    operation_id="connectSession",
    response_model=ConnectionDescriptor,
    response_description="Connection descriptor",
    responses=errors(401, 404, 409, 422, 429, 503),
)
async def connect_session(
    session_id: SessionIdPath,
    request: Request,
    services: SessionServices,
    principal: Caller,
) -> JSONResponse:
    """Relay mode: issues a descriptor naming the relay and a one-time token; nothing moves until the
    relay connects the client to the host (then the session is `active`, reason `client_connected`).
    A client connecting to an active session takes it over (the older connection is closed).
    Direct mode (RDP_CONTROLLER_RELAY_PORT=0): the session becomes `active` at once, since the
    controller cannot see the client. A suspended session answers 409: use `.../reconnect`.
    """
    client = request.client.host if request.client else None
    descriptor = await services.sessions.connect(
        session_id, owner=owner_of(principal), actor=actor_of(principal), client_address=client
    )
    body = descriptor.model_dump(mode="json")
    return checked(services.schemas, body, "ConnectionDescriptor")


@router.get(
    "/{session_id}/rdp",
    response_class=RdpFileResponse,
    summary="Download the session's .rdp file "
    "(relay mode - with a fresh one-time token; direct mode - without one)",
    operation_id="downloadRdpFile",
    response_description="The .rdp file",
    responses=errors(401, 404, 409, 422, 429),
)
async def download_rdp_file(
    session_id: SessionIdPath,
    services: SessionServices,
    principal: Caller,
) -> Response:
    content = await services.sessions.rdp_file(session_id, owner=owner_of(principal))
    return Response(
        content,
        media_type="application/x-rdp",
        headers={"Content-Disposition": f'attachment; filename="session-{session_id}.rdp"'},
    )


@router.post(
    "/{session_id}/disconnect",
    summary="The client disconnected (active/idle -> suspended); the disconnect timer starts",
    operation_id="disconnectSession",
    response_model=Session,
    response_description="The suspended session",
    responses=errors(401, 404, 409, 422, 429),
)
async def disconnect_session(
    session_id: SessionIdPath,
    services: SessionServices,
    principal: Caller,
) -> JSONResponse:
    document = await services.sessions.disconnect(
        session_id, owner=owner_of(principal), actor=actor_of(principal)
    )
    return session_body(services.schemas, document)


@router.post(
    "/{session_id}/reconnect",
    summary="Reconnect a suspended session to its own server (a new descriptor and token)",
    operation_id="reconnectSession",
    response_model=ConnectionDescriptor,
    response_description="Connection descriptor",
    responses=errors(401, 404, 409, 422, 429, 503),
)
async def reconnect_session(
    session_id: SessionIdPath,
    services: SessionServices,
    principal: Caller,
) -> JSONResponse:
    """Relay mode: the session stays `suspended` until the relay connects the client to the same host
    with the new token (then `active`). Direct mode: the session becomes `active` at once.
    """
    descriptor = await services.sessions.reconnect_with_descriptor(
        session_id, owner=owner_of(principal), actor=actor_of(principal)
    )
    body = descriptor.model_dump(mode="json")
    return checked(services.schemas, body, "ConnectionDescriptor")


@router.post(
    "/{session_id}/activity",
    summary="Activity heartbeat (resets the idle timer; idle -> active)",
    operation_id="recordActivity",
    response_model=Session,
    response_description="The session",
    responses=errors(401, 404, 409, 413, 422, 429),
)
async def record_activity(
    session_id: SessionIdPath,
    services: SessionServices,
    principal: Caller,
    activity: Annotated[
        ActivityRequest | None,
        Body(
            description='Optional traffic figures; no body, `{}` and `null` all mean "activity, no figures".'
        ),
    ] = None,
) -> JSONResponse:
    activity = activity or ActivityRequest()
    document = await services.sessions.record_activity(
        session_id,
        owner=owner_of(principal),
        actor=actor_of(principal),
        bytes_in=activity.bytes_in,
        bytes_out=activity.bytes_out,
    )
    return session_body(services.schemas, document)


@router.put(
    "/{session_id}/status",
    summary="Move a session to another status, checked against the state machine",
    operation_id="updateSessionStatus",
    response_model=Session,
    response_description="The session",
    responses=errors(401, 404, 409, 413, 422, 429),
)
async def update_status(
    session_id: SessionIdPath,
    update: StatusUpdateRequest,
    services: SessionServices,
    principal: Caller,
) -> JSONResponse:
    document = await services.sessions.update_status(
        session_id, update.status, owner=owner_of(principal), reason=update.reason, actor=actor_of(principal)
    )
    return session_body(services.schemas, document)


@router.get(
    "/{session_id}/events",
    summary="The session's state changes, oldest first",
    operation_id="sessionEvents",
    response_model=SessionEventList,
    response_description="Events",
    responses=errors(401, 404, 422, 429),
)
async def session_events(
    session_id: SessionIdPath,
    services: SessionServices,
    principal: Caller,
    limit: Annotated[int, Query(ge=1, le=1000)] = 200,
) -> JSONResponse:
    events = await services.sessions.events(session_id, owner=owner_of(principal), limit=limit)
    hidden = ("seq", "user_id", "server_id")
    body = jsonable_encoder({"items": [{k: v for k, v in e.items() if k not in hidden} for e in events]})
    return checked(services.schemas, body, "SessionEventList")


@router.get(
    "/{session_id}/metrics",
    summary="Session figures (durations, traffic, and rdp-monitor's figures when configured)",
    operation_id="sessionMetrics",
    response_model=SessionMetrics,
    response_description="Figures",
    responses=errors(401, 404, 422, 429),
)
async def session_metrics(
    session_id: SessionIdPath,
    services: SessionServices,
    principal: Caller,
) -> JSONResponse:
    body = await services.insights.session_metrics(session_id, owner=owner_of(principal))
    return checked(services.schemas, body, "SessionMetrics")


@router.get(
    "/{session_id}/health",
    summary="Session health (its server's state and last probe, time left on each timer)",
    operation_id="sessionHealth",
    response_model=SessionHealth,
    response_description="Health",
    responses=errors(401, 404, 422, 429),
)
async def session_health(
    session_id: SessionIdPath,
    services: SessionServices,
    principal: Caller,
) -> JSONResponse:
    body = await services.insights.session_health(session_id, owner=owner_of(principal))
    return checked(services.schemas, body, "SessionHealth")
