"""The fault tier's machinery: backends it can kill and hang, two replicas, client load, samplers.

Everything runs on loopback: a SecantusDB server (MongoDB wire protocol) with its data on disk and
a Redis server, both child processes of the test; two replicas of the service as real processes
(``rdp-controller/entrypoint.py``) sharing them; client threads creating and terminating sessions
above the host's capacity; and two samplers that count the host's live sessions in MongoDB and its
live leases in Redis every 100 ms while the faults happen.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import shutil
import signal
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from pymongo import MongoClient
from pymongo.errors import PyMongoError
from redis import Redis
from redis.exceptions import RedisError

from common.devstack import EmbeddedStack
from common.xrdp import free_loopback_port
from tests.support.process import ServiceProcess, entrypoint_argv
from tests.support.service_api import SERVICE, entrypoint_env

# The service's settings in this tier: the figures (a host of 20, reconcile every 2 s,
# leases of 13 s), a 1 s backend timeout so a hang shows within the tier's time.
CAPACITY = 20
USER_LIMIT = 3
USERS = [f"fault-user-{n}" for n in range(10)]  # 10 x 3 = 30 sessions wanted: above the capacity
BACKEND_TIMEOUT = 1.0
RECONCILE_INTERVAL = 2.0
LEASE_TTL = 13
SLOWEST_ALLOWED = 3 * BACKEND_TIMEOUT
# Leases of sessions that do not exist go 2 x BACKEND_TIMEOUT after their reservation plus a period.
ORPHAN_GRACE = 2 * BACKEND_TIMEOUT
# A replica killed while it led the reconciler: its lock (max(3 periods, 10 s)) lapses first.
LEADER_LOCK = max(3 * RECONCILE_INTERVAL, 10.0)
LIVE = ["creating", "ready", "active", "idle", "suspended"]
# The 503s the API documents (openapi.yaml, components.responses.Unavailable).
DOCUMENTED_503 = {"BACKEND_UNAVAILABLE", "NO_CAPACITY", "LEASES_REBUILDING"}
START_TIMEOUT = 60.0
STOP_TIMEOUT = 10.0


class Backends(EmbeddedStack):
    """The dev stack's SecantusDB (data on disk, fsync on commit) and Redis (no persistence), faulted.

    ``--sync-on-commit``: SecantusDB otherwise keeps its last second of commits in memory (like
    mongod's default ``j: false``), and a SIGKILL loses them; this tier tests the controller, so
    its MongoDB keeps every acknowledged write, as a journaled deployment does. The servers are
    named as the dev stack names them: ``"SecantusDB"`` and ``"Redis"``.
    """

    def __init__(self, workdir: Path) -> None:
        self.mongo_data = workdir / "mongo-data"
        super().__init__(self.mongo_data, workdir=workdir, secantus_options=("--sync-on-commit",))

    def flushall(self) -> None:
        with Redis.from_url(self.redis_url, socket_timeout=2) as client:
            client.flushall()

    def stop(self) -> None:
        super().stop()
        shutil.rmtree(self.mongo_data, ignore_errors=True)


class Replicas:
    """Two service processes on the same database and key prefix, each restartable."""

    def __init__(self, backends: Backends, logdir: Path) -> None:
        self.backends = backends
        self.logdir = logdir
        tag = os.urandom(4).hex()
        unreachable = free_loopback_port()  # the host is never probed unhealthy (see the probe settings)
        self.shared = {
            "MONGODB_DATABASE": f"faults_{tag}",
            "RDP_CONTROLLER_REDIS_PREFIX": f"faults{tag}",
            "BACKEND_TIMEOUT_SECONDS": str(BACKEND_TIMEOUT),
            "RDP_CONTROLLER_RECONCILE_INTERVAL": str(RECONCILE_INTERVAL),
            "RDP_CONTROLLER_LEASE_TTL": str(LEASE_TTL),
            "RDP_CONTROLLER_REAPER_INTERVAL": "0.5",
            "RDP_CONTROLLER_MAX_SESSIONS_PER_USER": str(USER_LIMIT),
            "RDP_CONTROLLER_RATE_LIMIT_PER_MINUTE": "0",
            "RDP_CONTROLLER_PROBE_INTERVAL": "3600",
            "RDP_CONTROLLER_UNHEALTHY_THRESHOLD": "100",
            "RDP_CONTROLLER_SERVERS": json.dumps(
                [{"name": "fault-host", "address": "127.0.0.1", "port": unreachable, "capacity": CAPACITY}]
            ),
            "LOG_LEVEL": "WARNING",
        }
        self.processes: list[ServiceProcess] = []
        self.started = 0

    @property
    def database(self) -> str:
        return self.shared["MONGODB_DATABASE"]

    @property
    def prefix(self) -> str:
        return self.shared["RDP_CONTROLLER_REDIS_PREFIX"]

    def _new(self) -> ServiceProcess:
        port = free_loopback_port()
        self.started += 1
        env = entrypoint_env(port, self.backends.mongodb_url, self.backends.redis_url, **self.shared)
        return ServiceProcess(
            entrypoint_argv(),
            env=env,
            port=port,
            log_path=self.logdir / f"replica-{self.started}.log",
            stop_timeout=STOP_TIMEOUT,
        )

    def start(self, count: int = 2) -> Replicas:
        for _ in range(count):
            self.processes.append(self._new().start())
        for process in self.processes:
            process.wait_for_health(timeout=START_TIMEOUT)
        return self

    def urls(self) -> list[str]:
        return [process.base_url for process in self.processes if process.running]

    def sigkill(self, index: int) -> ServiceProcess:
        process = self.processes[index]
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=STOP_TIMEOUT)
        process.stop()
        return process

    def replace(self, index: int) -> None:
        """Start a new replica in place of a stopped one."""
        process = self._new().start()
        process.wait_for_health(timeout=START_TIMEOUT)
        self.processes[index] = process

    def log_tails(self) -> str:
        return "\n".join(process.log_tail(30) for process in self.processes)

    def stop(self) -> None:
        for process in self.processes:
            process.stop()


class Threads:
    """Daemon threads that run until ``stop()`` sets ``stopping``: the load's clients, the samplers."""

    def __init__(self, join_timeout: float) -> None:
        self.stopping = threading.Event()
        self.join_timeout = join_timeout
        self._threads: list[threading.Thread] = []

    def start(self, target: Callable[..., None], *args: Any, name: str | None = None) -> None:
        thread = threading.Thread(target=target, args=args, name=name, daemon=True)
        thread.start()
        self._threads.append(thread)

    def stop(self) -> None:
        self.stopping.set()
        for thread in self._threads:
            thread.join(timeout=self.join_timeout)


@dataclass
class Answer:
    method: str
    started: float  # time.monotonic()
    seconds: float
    status: int | None  # None: no HTTP answer (a killed replica); -1: none within the client's 15 s
    code: str = ""
    session_id: str | None = None
    user: str = ""


@dataclass
class Load:
    """Client threads creating and terminating sessions through both replicas, above capacity."""

    urls: Callable[[], list[str]]
    workers: int = 5
    answers: list[Answer] = field(default_factory=list)
    created: dict[str, str] = field(default_factory=dict)  # session_id -> user_id of every 201
    _threads: Threads = field(default_factory=lambda: Threads(join_timeout=30))
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def start(self) -> Load:
        for index in range(self.workers):
            users = USERS[index * 2 : index * 2 + 2]
            self._threads.start(self._work, index, users, name=f"load-{index}")
        return self

    def stop(self) -> None:
        self._threads.stop()

    def since(self, moment: float) -> list[Answer]:
        with self._lock:
            return [a for a in self.answers if a.started >= moment]

    def _record(self, answer: Answer) -> None:
        with self._lock:
            self.answers.append(answer)
            if answer.status == 201 and answer.session_id:
                self.created[answer.session_id] = answer.user

    def _work(self, index: int, users: list[str]) -> None:
        chooser = random.Random(index)
        held: list[str] = []
        turn = index
        with httpx.Client(timeout=15.0, headers=SERVICE) as client:
            while not self._threads.stopping.is_set():
                urls = self.urls()
                if not urls:
                    time.sleep(0.05)
                    continue
                turn += 1
                base = urls[turn % len(urls)]
                if held and (len(held) >= 2 * USER_LIMIT or chooser.random() < 0.35):
                    session_id = chooser.choice(held)
                    answer = self._call(client, "DELETE", f"{base}/api/v1/sessions/{session_id}")
                    if answer.status in (200, 404):
                        held.remove(session_id)
                else:
                    user = chooser.choice(users)
                    body = {"user_id": user, "new_session": True}
                    answer = self._call(client, "POST", f"{base}/api/v1/sessions", json=body)
                    answer.user = user
                    if answer.status == 201 and answer.session_id:
                        held.append(answer.session_id)
                self._record(answer)
                time.sleep(0.02)

    @staticmethod
    def _call(client: httpx.Client, method: str, url: str, **kwargs: Any) -> Answer:
        started = time.monotonic()
        try:
            response = client.request(method, url, **kwargs)
        except httpx.TransportError as exc:
            seconds = time.monotonic() - started
            status = -1 if isinstance(exc, httpx.TimeoutException) else None
            return Answer(method, started, seconds, status, type(exc).__name__)
        seconds = time.monotonic() - started
        code, session_id = "", None
        with contextlib.suppress(ValueError, KeyError, TypeError):
            body = response.json()
            if response.status_code >= 400:
                code = body["error"]["code"]
            elif method == "POST":
                session_id = body["session_id"]
        return Answer(method, started, seconds, response.status_code, code, session_id)


@dataclass
class Sampler:
    """Counts the host's live sessions (MongoDB) and live leases (Redis) every 100 ms."""

    backends: Backends
    database: str
    prefix: str
    server_id: str
    interval: float = 0.1
    mongo_max: int = 0
    redis_max: int = 0
    user_mongo_max: int = 0
    user_redis_max: int = 0
    mongo_samples: int = 0
    redis_samples: int = 0
    over: list[str] = field(default_factory=list)
    _threads: Threads = field(default_factory=lambda: Threads(join_timeout=10))

    def start(self) -> Sampler:
        self._threads.start(self._mongo)
        self._threads.start(self._redis)
        return self

    def stop(self) -> None:
        self._threads.stop()

    def _mongo(self) -> None:
        client: MongoClient[dict[str, Any]] = MongoClient(
            self.backends.mongodb_url, timeoutMS=500, serverSelectionTimeoutMS=500, connectTimeoutMS=500
        )
        sessions = client[self.database]["rdp_sessions"]
        try:
            while not self._threads.stopping.wait(self.interval):
                try:
                    live = list(
                        sessions.find(
                            {"server_id": self.server_id, "status": {"$in": LIVE}}, {"user_id": True}
                        )
                    )
                except PyMongoError:
                    continue  # MongoDB is down or hung right now: no sample
                per_user = Counter(document["user_id"] for document in live)
                self.mongo_samples += 1
                self.mongo_max = max(self.mongo_max, len(live))
                self.user_mongo_max = max([self.user_mongo_max, *per_user.values()])
                if len(live) > CAPACITY:
                    self.over.append(f"MongoDB: {len(live)} live sessions on a host of {CAPACITY}")
                if per_user and max(per_user.values()) > USER_LIMIT:
                    self.over.append(f"MongoDB: a user with {max(per_user.values())} live sessions")
        finally:
            client.close()

    def _redis(self) -> None:
        with Redis.from_url(
            self.backends.redis_url, socket_timeout=0.5, socket_connect_timeout=0.5
        ) as client:
            while not self._threads.stopping.wait(self.interval):
                now = int(time.time() * 1000)
                try:
                    with client.pipeline(transaction=False) as pipe:
                        pipe.zcount(f"{self.prefix}:slots:{self.server_id}", now, "+inf")
                        for user in USERS:
                            pipe.zcount(f"{self.prefix}:user:{user}", now, "+inf")
                        counts = [int(count) for count in pipe.execute()]
                except (RedisError, OSError):
                    continue
                self.redis_samples += 1
                self.redis_max = max(self.redis_max, counts[0])
                self.user_redis_max = max([self.user_redis_max, *counts[1:]])
                if counts[0] > CAPACITY:
                    self.over.append(f"Redis: {counts[0]} live leases on a host of {CAPACITY}")
                if max(counts[1:]) > USER_LIMIT:
                    self.over.append(f"Redis: a user with {max(counts[1:])} live leases")


@dataclass
class Figures:
    fault: str
    requests: int = 0
    statuses: Counter[str] = field(default_factory=Counter)
    mongo_max: int = 0
    redis_max: int = 0
    user_max: int = 0
    samples: str = ""
    slowest: float = 0.0
    recovery: float | None = None
    exact_after: float | None = None
    fault_seconds: float = 0.0
    note: str = ""

    def lines(self) -> list[str]:
        statuses = ", ".join(f"{key} x{count}" for key, count in sorted(self.statuses.items()))
        recovery = "none" if self.recovery is None else f"{self.recovery:.2f} s"
        exact = "never" if self.exact_after is None else f"{self.exact_after:.1f} s"
        return [
            f"{self.fault}: {self.requests} requests; fault lasted {self.fault_seconds:.1f} s",
            f"  statuses: {statuses}",
            f"  max live on the host: MongoDB {self.mongo_max}/{CAPACITY}, Redis leases "
            f"{self.redis_max}/{CAPACITY}; max per user {self.user_max}/{USER_LIMIT} ({self.samples})",
            f"  slowest answer {self.slowest:.2f} s (bound {SLOWEST_ALLOWED:.1f} s); first 201 after the "
            f"fault ended: {recovery}; lease sets exact {exact} after the load stopped",
            *([f"  {self.note}"] if self.note else []),
        ]


FIGURES: list[Figures] = []


@contextlib.contextmanager
def running(load: Load, sampler: Sampler) -> Iterator[None]:
    sampler.start()
    load.start()
    try:
        yield
    finally:
        load.stop()
        sampler.stop()
