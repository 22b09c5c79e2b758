"""Plain ASGI middleware: the request body size limit, and ``OPTIONS`` answered from the route table."""

from __future__ import annotations

import json
from collections.abc import Iterable

from starlette.exceptions import HTTPException
from starlette.routing import BaseRoute, Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from common.errors import ErrorCode, error_body

# The methods an ``Allow`` can list, in its order.
METHOD_ORDER = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")


def too_large_message(max_bytes: int) -> str:
    return f"request body is larger than {max_bytes} bytes"


class BodyTooLarge(HTTPException):
    """A body sent without Content-Length (chunked) grew past the limit while it was read.

    An ``HTTPException`` on purpose: FastAPI re-raises those from its body parsing and turns
    every other exception there into a 400, so the client gets this 413 (rendered by the one
    error handler in ``http_errors``) instead of "There was an error parsing the body".
    """

    def __init__(self, max_bytes: int) -> None:
        super().__init__(413, detail=too_large_message(max_bytes))
        self.max_bytes = max_bytes


class BodySizeLimit:
    def __init__(self, app: ASGIApp, *, max_bytes: int):
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.max_bytes):
            await self._refuse(send)
            return
        received = 0
        started = False

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise BodyTooLarge(self.max_bytes)
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except BodyTooLarge:
            if not started:
                await self._refuse(send)

    async def _refuse(self, send: Send) -> None:
        error = error_body(
            ErrorCode.PAYLOAD_TOO_LARGE, too_large_message(self.max_bytes), {"max_bytes": self.max_bytes}
        )
        body = json.dumps(error).encode()
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": 413, "headers": headers})
        await send({"type": "http.response.body", "body": body})


def served_methods(routes: Iterable[BaseRoute], scope: Scope) -> list[str]:
    """The methods some route serves at the request's path (in ``METHOD_ORDER``); empty for an unknown path.

    Every route is asked, once per method, through the public ``BaseRoute.matches``, so included
    routers (nested, prefixed) are asked like plain routes.
    """
    base = {key: value for key, value in scope.items() if key != "fastapi"}  # FastAPI's per-request state
    return [
        method
        for method in METHOD_ORDER
        if any(route.matches({**base, "type": "http", "method": method})[0] is Match.FULL for route in routes)
    ]


def allowed_methods(routes: Iterable[BaseRoute], scope: Scope) -> list[str]:
    """``Allow`` for the request's path: every method its routes serve, and ``OPTIONS`` (``OptionsAllow``).

    Starlette answers a method a path does not serve with the ``Allow`` of the first route whose
    path matches; FastAPI makes one route per method, so that named one method of several.
    """
    served = served_methods(routes, scope)
    if not served:
        return []
    return served if "OPTIONS" in served else [*served, "OPTIONS"]


class OptionsAllow:
    """``OPTIONS`` on a path the app serves: 204 with ``Allow`` listing every method of the path.

    No token is needed (the answer is the same for everyone and names no resource: the path's
    parameters are not looked up). A path the app does not serve goes on to the router (404), and
    so would one with a route of its own for ``OPTIONS`` (the app has none).
    """

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "OPTIONS" or "app" not in scope:
            await self.app(scope, receive, send)
            return
        routes = scope["app"].router.routes
        served = served_methods(routes, scope)
        if not served or "OPTIONS" in served:
            await self.app(scope, receive, send)
            return
        methods = allowed_methods(routes, scope)
        headers = [(b"allow", ", ".join(methods).encode())]
        await send({"type": "http.response.start", "status": 204, "headers": headers})
        await send({"type": "http.response.body", "body": b""})
