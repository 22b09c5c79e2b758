"""One translation of errors to HTTP: ``{"error": {"code", "message", "details"}}`` everywhere."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pymongo.errors import PyMongoError
from redis.exceptions import RedisError
from starlette.exceptions import HTTPException as StarletteHTTPException

from common.errors import ErrorCode, LucidError, RateLimited, error_body

from .middleware import BodyTooLarge, allowed_methods

logger = logging.getLogger(__name__)

# The framework's own refusals (routing, body parsing) and the codes they get.
HTTP_CODES = {
    400: ErrorCode.BAD_REQUEST,
    401: ErrorCode.UNAUTHORIZED,
    404: ErrorCode.NOT_FOUND,
    405: ErrorCode.METHOD_NOT_ALLOWED,
    413: ErrorCode.PAYLOAD_TOO_LARGE,
    415: ErrorCode.UNSUPPORTED_MEDIA_TYPE,
}

# Failures of json.loads that are not JSONDecodeError (FastAPI reports only that one as 422).
_UNPARSABLE_JSON: dict[type[BaseException], str] = {
    UnicodeDecodeError: "the body is not UTF-8 encoded",
    RecursionError: "nested too deeply",
}


def error_response(
    status: int,
    code: ErrorCode,
    message: str,
    details: dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    return JSONResponse(error_body(code, message, details), status_code=status, headers=headers)


def _field(location: tuple[Any, ...] | list[Any]) -> str:
    parts = [str(part) for part in location]
    if parts and parts[0] in ("body", "query", "path", "header"):
        kind, rest = parts[0], parts[1:]
        return ".".join(rest) if kind == "body" and rest else ".".join(rest) or kind
    return ".".join(parts)


async def _lucid(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, LucidError)
    headers = {"Retry-After": str(exc.retry_after)} if isinstance(exc, RateLimited) else None
    if exc.status_code == 401:
        headers = {"WWW-Authenticate": 'Bearer realm="rdp-controller"'}
    return error_response(exc.status_code, exc.code, exc.message, exc.details, headers)


def _describe(error: dict[str, Any]) -> tuple[str, str]:
    """The field an error is about and what is wrong with it, for the client."""
    kind, location = error.get("type"), tuple(error.get("loc", ()))
    message = str(error.get("msg", "invalid"))
    if kind == "extra_forbidden":
        return _field(location), "unknown field"
    if kind == "json_invalid":
        # FastAPI's location is ("body", <character offset>): the field is the body itself.
        position = f" at character {location[1]}" if len(location) > 1 else ""
        reason = str((error.get("ctx") or {}).get("error", "JSON decode error"))
        return "body", f"invalid JSON: {reason}{position}"
    if location == ("body",) and kind in ("model_attributes_type", "dict_type", "model_type"):
        return "body", "must be a JSON object (Content-Type: application/json)"
    return _field(location), message


async def _validation(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = []
    for error in exc.errors():
        field, message = _describe(error)
        errors.append({"field": field, "message": message, "type": error.get("type")})
    summary = "; ".join(f"{e['field']}: {e['message']}" for e in errors[:5]) or "invalid request"
    return error_response(422, ErrorCode.VALIDATION_ERROR, summary, {"errors": errors})


async def _http(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    cause = exc.__cause__
    unparsable = _UNPARSABLE_JSON.get(type(cause)) if exc.status_code == 400 and cause is not None else None
    if unparsable is not None:
        # FastAPI's body parsing turns these into a bare 400; they are invalid JSON like any other.
        message = f"invalid JSON: {unparsable}"
        errors = [{"field": "body", "message": message, "type": "json_invalid"}]
        return error_response(422, ErrorCode.VALIDATION_ERROR, f"body: {message}", {"errors": errors})
    fallback = ErrorCode.BAD_REQUEST if exc.status_code < 500 else ErrorCode.INTERNAL_ERROR
    code = HTTP_CODES.get(exc.status_code, fallback)
    message = exc.detail if isinstance(exc.detail, str) else code.replace("_", " ").lower()
    details: dict[str, Any] | None = {"max_bytes": exc.max_bytes} if isinstance(exc, BodyTooLarge) else None
    headers = dict(exc.headers) if exc.headers else None
    if exc.status_code == 405:
        # Starlette's Allow names the methods of one route of the path; list those of all of them.
        allowed = allowed_methods(request.app.router.routes, request.scope)
        if allowed:
            headers = {**(headers or {}), "Allow": ", ".join(allowed)}
            details = {"allowed": allowed}
    return error_response(exc.status_code, code, message, details, headers)


async def _mongo(_request: Request, exc: Exception) -> JSONResponse:
    logger.warning("MongoDB unavailable: %s", exc)
    return error_response(
        503, ErrorCode.BACKEND_UNAVAILABLE, "MongoDB is unavailable; try again", {"backend": "mongodb"}
    )


async def _redis(_request: Request, exc: Exception) -> JSONResponse:
    logger.warning("Redis unavailable: %s", exc)
    details = {"backend": "redis"}
    return error_response(503, ErrorCode.BACKEND_UNAVAILABLE, "Redis is unavailable; try again", details)


async def _unexpected(_request: Request, exc: Exception) -> JSONResponse:
    logger.error("Unhandled error", exc_info=exc)
    return error_response(500, ErrorCode.INTERNAL_ERROR, "internal error; it has been logged")


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(LucidError, _lucid)
    app.add_exception_handler(RequestValidationError, _validation)
    app.add_exception_handler(StarletteHTTPException, _http)
    app.add_exception_handler(PyMongoError, _mongo)
    app.add_exception_handler(RedisError, _redis)
    app.add_exception_handler(Exception, _unexpected)
