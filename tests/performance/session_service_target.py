"""The service side of bench_sessions.py: create+terminate pairs through the running service's HTTP
API (``POST /api/v1/sessions`` + ``DELETE /api/v1/sessions/{id}``), on the one server it registers."""

from __future__ import annotations

import time

import httpx

from security.jwt_auth import mint_token
from tests.performance.session_floor import SERVER_CAPACITY


class ServiceTarget:
    """Pairs through the running service's HTTP API (one ``httpx.AsyncClient`` for every worker)."""

    name = "service (HTTP)"

    def __init__(self, base_url: str, secret: str, concurrency: int) -> None:
        def bearer(subject: str, role: str) -> dict[str, str]:
            value = mint_token(
                secret=secret, subject=subject, roles=[role], audience="rdp-controller", ttl_seconds=3600
            )
            return {"Authorization": f"Bearer {value}"}

        self.operator, self.service = bearer("bench-ops", "operator"), bearer("bench-session-api", "service")
        # Idle connections are dropped by the client before uvicorn's 5 s keep-alive timeout closes them:
        # else a request sent on a connection the server is closing fails (between rounds, mostly).
        limits = httpx.Limits(
            max_connections=concurrency, max_keepalive_connections=concurrency, keepalive_expiry=2.0
        )
        self.client = httpx.AsyncClient(base_url=base_url, limits=limits, timeout=60.0)

    async def __aenter__(self) -> ServiceTarget:
        registered = await self.client.post(
            "/api/v1/servers",
            headers=self.operator,
            json={"name": "bench-host", "address": "127.0.0.1", "port": 9, "capacity": SERVER_CAPACITY},
        )
        if registered.status_code != 201:
            await self.client.aclose()
            raise RuntimeError(f"register server: {registered.status_code} {registered.text}")
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.client.aclose()

    async def one_pair(self, worker: int) -> tuple[float, float]:
        started = time.perf_counter()
        created = await self.client.post(
            "/api/v1/sessions", headers=self.service, json={"user_id": f"bench-{worker}"}
        )
        middle = time.perf_counter()
        if created.status_code != 201:
            raise RuntimeError(f"create: {created.status_code} {created.text[:300]}")
        session_id = created.json()["session_id"]
        ended = await self.client.delete(f"/api/v1/sessions/{session_id}", headers=self.service)
        if ended.status_code != 200 or ended.json()["status"] != "terminated":
            raise RuntimeError(f"terminate: {ended.status_code} {ended.text[:300]}")
        return (middle - started) * 1000, (time.perf_counter() - middle) * 1000
