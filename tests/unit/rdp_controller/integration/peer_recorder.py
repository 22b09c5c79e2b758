"""A recording peer for the four peer clients' contract tests, not a test: ``Recorder`` answers every
request alike and keeps them, ``build`` makes a client of it (one attempt, no sleeping), and
``check_contract`` asserts the method, path, body and idempotency key one call sends."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

import httpx

from rdp_controller.integration.service_base import ServiceClientBase

SID = "5f0c8a9e-0a43-4c1e-9b0e-3f8f5b0d2a11"

Call = Callable[[Any], Awaitable[Any]]


class Recorder:
    def __init__(self, answer: Any = None, status: int = 200) -> None:
        self.requests: list[httpx.Request] = []
        self.answer = {"ok": True} if answer is None else answer
        self.status = status

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return httpx.Response(self.status, json=self.answer)

    @property
    def last(self) -> tuple[str, str, Any, str | None]:
        request = self.requests[-1]
        body = json.loads(request.content) if request.content else None
        return request.method, request.url.raw_path.decode(), body, request.headers.get("idempotency-key")


def build(cls: type[ServiceClientBase], recorder: Recorder) -> Any:
    async def no_sleep(_: float) -> None:
        return None

    return cls(
        "http://peer.test:9000/",
        timeout=1.0,
        retry_count=1,
        retry_delay=0.0,
        transport=httpx.MockTransport(recorder),
        peer_name=cls.__name__,
        sleep=no_sleep,
    )


async def check_contract(cls: type[ServiceClientBase], call: Call, method: str, path: str, body: Any) -> None:
    """``call`` on a ``cls`` client sends ``method path body`` (with the key "k" when it writes)."""
    recorder = Recorder({"server_id": "srv-9", "status": "running"})
    client = build(cls, recorder)
    answer = await call(client)
    sent_method, sent_path, sent_body, key = recorder.last
    assert (sent_method, sent_path, sent_body) == (method, path, body)
    assert key == ("k" if method in ("POST", "DELETE") else None)
    assert answer == {"server_id": "srv-9", "status": "running"}
    await client.close()
