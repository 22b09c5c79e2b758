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
    ID_PATTERN,
    MAX_LIST_LIMIT,
    USER_ID_PATTERN,
    ActivityRequest,
    CreateSessionRequest,
    Session,
    SessionStatus,
    StatusUpdateRequest,
    TerminationReason,
)
from ..schema_validator import SchemaValidator
from .deps import Caller, SessionServices, creator_of, owner_of

router = APIRouter(prefix="/api/v1/sessions", tags=["sessions"])

IDEMPOTENCY_KEY_RE = re.compile(r"^[A-Za-z0-9_.:-]{1,128}$")
SessionIdPath = Annotated[str, Path(pattern=ID_PATTERN, description="Session id (UUID)")]
Document = dict[str, Any]


def session_body(
    schemas: SchemaValidator, document: Document, status_code: int = 200, **extra: Any
) -> JSONResponse:
    body = Session.from_document(document, **extra).model_dump(mode="json", exclude_none=False)
    if body.get("reconnected") is None:
        body.pop("reconnected")
    schemas.check_response("session", body, definition="Session")
    return JSONResponse(body, status_code=status_code)


def actor_of(principal: Principal) -> str:
    return principal.subject


@router.post("", status_code=201)
async def create_session(
    request: CreateSessionRequest,
    services: SessionServices,
    principal: Caller,
    idempotency_key: str | None = Header(default=None, alias="Idempotency-Key"),
) -> JSONResponse:
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


@router.get("")
async def list_sessions(
    services: SessionServices,
    principal: Caller,
    user_id: Annotated[str | None, Query(pattern=USER_ID_PATTERN)] = None,
    status: SessionStatus | None = None,
    server_id: Annotated[str | None, Query(pattern=ID_PATTERN)] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_LIST_LIMIT)] = 50,
    cursor: Annotated[str | None, Query(max_length=512)] = None,
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
    services.schemas.check_response("session", body, definition="SessionPage")
    return JSONResponse(body)


@router.get("/{session_id}")
async def get_session(
    session_id: SessionIdPath,
    services: SessionServices,
    principal: Caller,
) -> JSONResponse:
    return session_body(services.schemas, await services.sessions.get(session_id, owner=owner_of(principal)))


@router.delete("/{session_id}")
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


@router.post("/{session_id}/connect")
async def connect_session(
    session_id: SessionIdPath,
    request: Request,
    services: SessionServices,
    principal: Caller,
) -> JSONResponse:
    client = request.client.host if request.client else None
    descriptor = await services.sessions.connect(
        session_id, owner=owner_of(principal), actor=actor_of(principal), client_address=client
    )
    body = descriptor.model_dump(mode="json")
    services.schemas.check_response("session", body, definition="ConnectionDescriptor")
    return JSONResponse(body)


@router.get("/{session_id}/rdp", response_class=Response)
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


@router.post("/{session_id}/disconnect")
async def disconnect_session(
    session_id: SessionIdPath,
    services: SessionServices,
    principal: Caller,
) -> JSONResponse:
    document = await services.sessions.disconnect(
        session_id, owner=owner_of(principal), actor=actor_of(principal)
    )
    return session_body(services.schemas, document)


@router.post("/{session_id}/reconnect")
async def reconnect_session(
    session_id: SessionIdPath,
    services: SessionServices,
    principal: Caller,
) -> JSONResponse:
    descriptor = await services.sessions.reconnect_with_descriptor(
        session_id, owner=owner_of(principal), actor=actor_of(principal)
    )
    body = descriptor.model_dump(mode="json")
    services.schemas.check_response("session", body, definition="ConnectionDescriptor")
    return JSONResponse(body)


@router.post("/{session_id}/activity")
async def record_activity(
    session_id: SessionIdPath,
    services: SessionServices,
    principal: Caller,
    activity: Annotated[ActivityRequest | None, Body()] = None,
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


@router.put("/{session_id}/status")
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


@router.get("/{session_id}/events")
async def session_events(
    session_id: SessionIdPath,
    services: SessionServices,
    principal: Caller,
    limit: Annotated[int, Query(ge=1, le=1000)] = 200,
) -> JSONResponse:
    events = await services.sessions.events(session_id, owner=owner_of(principal), limit=limit)
    hidden = ("seq", "user_id", "server_id")
    body = jsonable_encoder({"items": [{k: v for k, v in e.items() if k not in hidden} for e in events]})
    services.schemas.check_response("session", body, definition="SessionEventList")
    return JSONResponse(body)


@router.get("/{session_id}/metrics")
async def session_metrics(
    session_id: SessionIdPath,
    services: SessionServices,
    principal: Caller,
) -> JSONResponse:
    body = await services.insights.session_metrics(session_id, owner=owner_of(principal))
    services.schemas.check_response("session", body, definition="SessionMetrics")
    return JSONResponse(body)


@router.get("/{session_id}/health")
async def session_health(
    session_id: SessionIdPath,
    services: SessionServices,
    principal: Caller,
) -> JSONResponse:
    body = await services.insights.session_health(session_id, owner=owner_of(principal))
    services.schemas.check_response("session", body, definition="SessionHealth")
    return JSONResponse(body)
