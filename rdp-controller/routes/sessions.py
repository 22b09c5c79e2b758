"""Sessions API (``/api/v1/sessions``): thin handlers over ``SessionController``."""

from __future__ import annotations

import re
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Header, Path, Query, Request
from fastapi.encoders import jsonable_encoder
from fastapi.responses import JSONResponse, Response

from common.errors import Forbidden, ValidationFailed
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
from ..runtime import Runtime
from .deps import get_principal, get_runtime, owner_of

router = APIRouter(prefix="/api/v1/sessions", tags=["sessions"])

IDEMPOTENCY_KEY_RE = re.compile(r"^[A-Za-z0-9_.:-]{1,128}$")
SessionIdPath = Annotated[str, Path(pattern=ID_PATTERN, description="Session id (UUID)")]
Document = dict[str, Any]


def session_body(runtime: Runtime, document: Document, status_code: int = 200, **extra: Any) -> JSONResponse:
    body = Session.from_document(document, **extra).model_dump(mode="json", exclude_none=False)
    if body.get("reconnected") is None:
        body.pop("reconnected")
    runtime.schemas.check_response("session", body, definition="Session")
    return JSONResponse(body, status_code=status_code)


def actor_of(principal: Principal) -> str:
    return principal.subject


@router.post("", status_code=201)
async def create_session(
    request: CreateSessionRequest,
    runtime: Runtime = Depends(get_runtime),
    principal: Principal = Depends(get_principal),
    idempotency_key: str | None = Header(default=None, alias="Idempotency-Key"),
) -> JSONResponse:
    if idempotency_key is not None and not IDEMPOTENCY_KEY_RE.fullmatch(idempotency_key):
        raise ValidationFailed(
            "Idempotency-Key: 1 to 128 characters of A-Z a-z 0-9 _ . : -",
            details={"field": "Idempotency-Key"},
        )
    if principal.is_privileged:
        if request.user_id is None:
            raise ValidationFailed(
                "user_id: required when a service or operator creates", details={"field": "user_id"}
            )
        user_id = request.user_id
    else:
        if request.user_id not in (None, principal.subject):
            raise Forbidden("user_id: a user creates sessions for itself only", details={"field": "user_id"})
        user_id = principal.subject
    if not re.fullmatch(USER_ID_PATTERN, user_id):
        raise ValidationFailed(
            "user_id: the token subject is not a valid user id", details={"field": "user_id"}
        )
    document, created = await runtime.creation.create(
        request, user_id=user_id, idempotency_key=idempotency_key, actor=actor_of(principal)
    )
    # 202: on a dedicated server still being provisioned, the session is "creating" (then ready or error).
    status_code = (202 if document["status"] == SessionStatus.CREATING.value else 201) if created else 200
    return session_body(runtime, document, status_code, reconnected=document.get("reconnected"))


@router.get("")
async def list_sessions(
    runtime: Runtime = Depends(get_runtime),
    principal: Principal = Depends(get_principal),
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
    documents, following = await runtime.sessions.page(filters=filters, limit=limit, cursor=cursor)
    body = {
        "items": [
            Session.from_document(d).model_dump(mode="json", exclude={"reconnected"}) for d in documents
        ],
        "next_cursor": following,
    }
    runtime.schemas.check_response("session", body, definition="SessionPage")
    return JSONResponse(body)


@router.get("/{session_id}")
async def get_session(
    session_id: SessionIdPath,
    runtime: Runtime = Depends(get_runtime),
    principal: Principal = Depends(get_principal),
) -> JSONResponse:
    return session_body(runtime, await runtime.sessions.get(session_id, owner=owner_of(principal)))


@router.delete("/{session_id}")
async def terminate_session(
    session_id: SessionIdPath,
    runtime: Runtime = Depends(get_runtime),
    principal: Principal = Depends(get_principal),
) -> JSONResponse:
    reason = TerminationReason.USER_REQUEST if owner_of(principal) else TerminationReason.ADMIN
    document = await runtime.sessions.terminate(
        session_id, owner=owner_of(principal), reason=reason, actor=actor_of(principal)
    )
    return session_body(runtime, document)


@router.post("/{session_id}/connect")
async def connect_session(
    session_id: SessionIdPath,
    request: Request,
    runtime: Runtime = Depends(get_runtime),
    principal: Principal = Depends(get_principal),
) -> JSONResponse:
    client = request.client.host if request.client else None
    descriptor = await runtime.sessions.connect(
        session_id, owner=owner_of(principal), actor=actor_of(principal), client_address=client
    )
    body = descriptor.model_dump(mode="json")
    runtime.schemas.check_response("session", body, definition="ConnectionDescriptor")
    return JSONResponse(body)


@router.get("/{session_id}/rdp", response_class=Response)
async def download_rdp_file(
    session_id: SessionIdPath,
    runtime: Runtime = Depends(get_runtime),
    principal: Principal = Depends(get_principal),
) -> Response:
    content = await runtime.sessions.rdp_file(session_id, owner=owner_of(principal))
    return Response(
        content,
        media_type="application/x-rdp",
        headers={"Content-Disposition": f'attachment; filename="session-{session_id}.rdp"'},
    )


@router.post("/{session_id}/disconnect")
async def disconnect_session(
    session_id: SessionIdPath,
    runtime: Runtime = Depends(get_runtime),
    principal: Principal = Depends(get_principal),
) -> JSONResponse:
    document = await runtime.sessions.disconnect(
        session_id, owner=owner_of(principal), actor=actor_of(principal)
    )
    return session_body(runtime, document)


@router.post("/{session_id}/reconnect")
async def reconnect_session(
    session_id: SessionIdPath,
    runtime: Runtime = Depends(get_runtime),
    principal: Principal = Depends(get_principal),
) -> JSONResponse:
    descriptor = await runtime.sessions.reconnect_with_descriptor(
        session_id, owner=owner_of(principal), actor=actor_of(principal)
    )
    body = descriptor.model_dump(mode="json")
    runtime.schemas.check_response("session", body, definition="ConnectionDescriptor")
    return JSONResponse(body)


@router.post("/{session_id}/activity")
async def record_activity(
    session_id: SessionIdPath,
    runtime: Runtime = Depends(get_runtime),
    principal: Principal = Depends(get_principal),
    activity: Annotated[ActivityRequest | None, Body()] = None,
) -> JSONResponse:
    activity = activity or ActivityRequest()
    document = await runtime.sessions.record_activity(
        session_id,
        owner=owner_of(principal),
        actor=actor_of(principal),
        bytes_in=activity.bytes_in,
        bytes_out=activity.bytes_out,
    )
    return session_body(runtime, document)


@router.put("/{session_id}/status")
async def update_status(
    session_id: SessionIdPath,
    update: StatusUpdateRequest,
    runtime: Runtime = Depends(get_runtime),
    principal: Principal = Depends(get_principal),
) -> JSONResponse:
    document = await runtime.sessions.update_status(
        session_id, update.status, owner=owner_of(principal), reason=update.reason, actor=actor_of(principal)
    )
    return session_body(runtime, document)


@router.get("/{session_id}/events")
async def session_events(
    session_id: SessionIdPath,
    runtime: Runtime = Depends(get_runtime),
    principal: Principal = Depends(get_principal),
    limit: Annotated[int, Query(ge=1, le=1000)] = 200,
) -> JSONResponse:
    events = await runtime.sessions.events(session_id, owner=owner_of(principal), limit=limit)
    hidden = ("seq", "user_id", "server_id")
    body = jsonable_encoder({"items": [{k: v for k, v in e.items() if k not in hidden} for e in events]})
    runtime.schemas.check_response("session", body, definition="SessionEventList")
    return JSONResponse(body)


@router.get("/{session_id}/metrics")
async def session_metrics(
    session_id: SessionIdPath,
    runtime: Runtime = Depends(get_runtime),
    principal: Principal = Depends(get_principal),
) -> JSONResponse:
    body = await runtime.insights.session_metrics(session_id, owner=owner_of(principal))
    runtime.schemas.check_response("session", body, definition="SessionMetrics")
    return JSONResponse(body)


@router.get("/{session_id}/health")
async def session_health(
    session_id: SessionIdPath,
    runtime: Runtime = Depends(get_runtime),
    principal: Principal = Depends(get_principal),
) -> JSONResponse:
    body = await runtime.insights.session_health(session_id, owner=owner_of(principal))
    runtime.schemas.check_response("session", body, definition="SessionHealth")
    return JSONResponse(body)
