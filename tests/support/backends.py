"""Which MongoDB and Redis the integration and end-to-end tiers use.

In order: testcontainers when a Docker engine answers; else ``MONGODB_URL``/``REDIS_URL``
from the environment when both are set; else the embedded dev stack. ``RDP_TEST_BACKEND``
(``testcontainers``, ``environment``, ``embedded``) insists on one, so a missing engine fails
instead of falling back.
"""

from __future__ import annotations

import gc
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from common.devstack import DevStackError, EmbeddedStack

# Pinned images for the testcontainers path (users' CI with a Docker engine).
MONGO_IMAGE = "mongo:7.0.28"
REDIS_IMAGE = "redis:7.2.11-alpine"
DEFAULT_DOCKER_SOCKET = "/var/run/docker.sock"
CHOICES = ("auto", "testcontainers", "environment", "embedded")


class BackendsUnavailable(RuntimeError):
    """No backend of the requested kind could be started."""


@dataclass
class Backends:
    kind: str
    mongodb_url: str
    redis_url: str
    stack: EmbeddedStack | None = None
    _containers: list[Any] = field(default_factory=list)

    @property
    def owned(self) -> bool:
        """True when this test session started the servers, so tests may flush them."""
        return self.kind != "environment"

    def describe(self) -> str:
        return f"{self.kind} (MongoDB {self.mongodb_url}, Redis {self.redis_url})"

    def stop(self) -> None:
        for container in reversed(self._containers):
            container.stop()
        self._containers.clear()
        if self.stack is not None:
            self.stack.stop()


def docker_engine_answers() -> bool:
    """True when a Docker engine answers a ping (DOCKER_HOST, else the default socket)."""
    if not os.environ.get("DOCKER_HOST") and not Path(DEFAULT_DOCKER_SOCKET).exists():
        return False
    try:
        import docker
        from docker.errors import DockerException
    except ImportError:
        return False
    # docker-py leaves a socket to the garbage collector when the engine does not answer; with
    # warnings as errors that ResourceWarning would fail an unrelated test later, so collect it here.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        try:
            client = docker.from_env(timeout=3)
            try:
                return bool(client.ping())
            finally:
                client.close()
        except (DockerException, OSError):
            return False
        finally:
            gc.collect()


def _start_containers() -> Backends:
    from testcontainers.community.mongodb import MongoDbContainer
    from testcontainers.community.redis import RedisContainer

    mongo = MongoDbContainer(MONGO_IMAGE)
    redis = RedisContainer(REDIS_IMAGE)
    mongo.start()
    try:
        redis.start()
    except BaseException:
        mongo.stop()
        raise
    backends = Backends(
        "testcontainers",
        mongo.get_connection_url(),
        f"redis://{redis.get_container_host_ip()}:{redis.get_exposed_port(6379)}/0",
        _containers=[mongo, redis],
    )
    _ping(backends)
    return backends


def _ping(backends: Backends) -> None:
    from pymongo import MongoClient
    from redis import Redis

    mongo: MongoClient[dict[str, Any]] = MongoClient(backends.mongodb_url, serverSelectionTimeoutMS=10_000)
    try:
        mongo.admin.command("ping")
    finally:
        mongo.close()
    redis = Redis.from_url(backends.redis_url, socket_timeout=10)
    try:
        redis.ping()
    finally:
        redis.close()


def start_backends(choice: str | None = None) -> Backends:
    choice = choice or os.environ.get("RDP_TEST_BACKEND", "auto")
    if choice not in CHOICES:
        raise BackendsUnavailable(f"RDP_TEST_BACKEND must be one of {', '.join(CHOICES)}, not {choice!r}")
    if choice == "testcontainers" or (choice == "auto" and docker_engine_answers()):
        if choice == "testcontainers" and not docker_engine_answers():
            raise BackendsUnavailable("RDP_TEST_BACKEND=testcontainers but no Docker engine answers")
        return _start_containers()
    mongodb_url, redis_url = os.environ.get("MONGODB_URL", ""), os.environ.get("REDIS_URL", "")
    if choice == "environment" or (choice == "auto" and mongodb_url and redis_url):
        if not (mongodb_url and redis_url):
            raise BackendsUnavailable("RDP_TEST_BACKEND=environment needs both MONGODB_URL and REDIS_URL")
        backends = Backends("environment", mongodb_url, redis_url)
        _ping(backends)
        return backends
    try:
        stack = EmbeddedStack(None).start()
    except DevStackError as exc:
        raise BackendsUnavailable(f"embedded dev stack: {exc}") from exc
    return Backends("embedded", stack.mongodb_url, stack.redis_url, stack=stack)
