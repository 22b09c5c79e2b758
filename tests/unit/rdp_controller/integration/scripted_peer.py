"""A scripted peer for ServiceClientBase and its circuit breaker, not a test: the clock, sleep and peer
a client is built with (``make_client``), so a test can steer time and the peer's answers."""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable
from typing import Any

import httpx

from rdp_controller.integration.service_base import ServiceClientBase

Handler = Callable[[httpx.Request], httpx.Response | Awaitable[httpx.Response]]


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Sleeps:
    """Injected sleep: records the delays, never sleeps."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)


class Peer:
    """A scripted peer: each request gets the next answer (a status, an exception, or a callable)."""

    def __init__(self, *answers: Any) -> None:
        self.answers = list(answers)
        self.requests: list[httpx.Request] = []

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        answer = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        if isinstance(answer, BaseException):
            raise answer
        if callable(answer):
            result: httpx.Response = await answer(request)
            return result
        if isinstance(answer, tuple):
            status, body = answer
            return httpx.Response(status, json=body)
        return httpx.Response(answer, json={"status": "ok"} if answer < 400 else {"detail": "nope"})


def make_client(
    peer: Handler,
    *,
    retry_count: int = 3,
    retry_delay: float = 0.5,
    failure_threshold: int = 3,
    reset_seconds: float = 30.0,
    sleeps: Sleeps | None = None,
    clock: Clock | None = None,
    rng: random.Random | None = None,
    token: Callable[[], str] | None = None,
    base_url: str = "http://peer.test:8080",
) -> ServiceClientBase:
    return ServiceClientBase(
        base_url,
        timeout=2.0,
        retry_count=retry_count,
        retry_delay=retry_delay,
        bearer_token_factory=token,
        failure_threshold=failure_threshold,
        reset_seconds=reset_seconds,
        transport=httpx.MockTransport(peer),
        peer_name="peer",
        max_retry_delay=4.0,
        sleep=sleeps or Sleeps(),
        clock=clock or Clock(),
        rng=rng,
    )
