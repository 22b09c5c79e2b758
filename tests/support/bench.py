"""What the benchmark scripts share: their backends and the environment of the service they measure."""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass

from common.devstack import EmbeddedStack
from tests.support.process import service_env


@dataclass(frozen=True)
class BenchBackends:
    mongodb_url: str
    redis_url: str
    description: str  # printed with the figures
    external: bool  # MONGODB_URL / REDIS_URL from the environment: the benchmark cleans up after itself


def bench_backends(resources: contextlib.ExitStack) -> BenchBackends:
    """``MONGODB_URL`` and ``REDIS_URL`` from the environment when both are set, else the embedded stack."""
    mongodb_url, redis_url = os.environ.get("MONGODB_URL", ""), os.environ.get("REDIS_URL", "")
    if mongodb_url and redis_url:
        return BenchBackends(mongodb_url, redis_url, "MONGODB_URL / REDIS_URL from the environment", True)
    stack = resources.enter_context(EmbeddedStack(None))
    return BenchBackends(stack.mongodb_url, stack.redis_url, "embedded (SecantusDB + redis-server)", False)


def bench_service_env(
    port: int, backends: BenchBackends, tag: str, secret: str, **settings: str
) -> dict[str, str]:
    """The measured service's environment: its own database and key prefix, no rate limit, no probes
    of the bench host (it is not an RDP server), and ``settings`` on top."""
    return service_env(
        RDP_CONTROLLER_PORT=str(port),
        LUCID_ENV="test",
        MONGODB_URL=backends.mongodb_url,
        REDIS_URL=backends.redis_url,
        MONGODB_DATABASE=f"bench_{tag}",
        RDP_CONTROLLER_REDIS_PREFIX=f"bench{tag}",
        JWT_SECRET_KEY=secret,
        RDP_CONTROLLER_RATE_LIMIT_PER_MINUTE="0",
        RDP_CONTROLLER_MAX_SESSIONS_PER_USER="1000",
        RDP_CONTROLLER_PROBE_INTERVAL="3600",
        **settings,
    )
