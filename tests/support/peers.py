"""Fake peer services for integration tests: rdp-server-manager, session-recorder, session-processor,
rdp-monitor.

One small FastAPI app serves the four peers' endpoints (their paths do not overlap), records
every call with its ``Idempotency-Key`` and ``Authorization``, replays the first answer for a
repeated key (as the real services do), and fails on demand: ``state.fail(peer)`` answers 503,
``state.hang(peer, seconds)`` holds the request, and ``PeerServer.stop()`` closes the port
(connection refused) until ``start()`` opens the same port again.

``PeerServer`` runs it under uvicorn in a background thread on 127.0.0.1 (a free port chosen at
first start, kept across restarts).
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from common.xrdp import free_loopback_port

SERVER_MANAGER = "rdp-server-manager"
RECORDER = "session-recorder"
PROCESSOR = "session-processor"
MONITOR = "rdp-monitor"
PEERS = (SERVER_MANAGER, RECORDER, PROCESSOR, MONITOR)
SERVER_HOST = "10.77.0.1"
FIRST_SERVER_PORT = 40000


@dataclass(frozen=True)
class Call:
    peer: str
    method: str
    path: str
    body: Any
    idempotency_key: str | None
    authorization: str | None
    at: float


@dataclass
class PeerState:
    """What the fake peers have seen and how they behave; shared with the test thread (locked)."""

    calls: list[Call] = field(default_factory=list)
    modes: dict[str, str] = field(default_factory=dict)
    hang_until: dict[str, float] = field(default_factory=dict)
    create_delay: float = 0.0
    processor_knows_only_recorded: bool = False
    servers: dict[str, dict[str, Any]] = field(default_factory=dict)
    recordings: dict[str, dict[str, Any]] = field(default_factory=dict)
    monitored: dict[str, dict[str, Any]] = field(default_factory=dict)
    finalized: dict[str, int] = field(default_factory=dict)
    replies: dict[str, tuple[int, Any]] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    # Behaviour -------------------------------------------------------------------------------
    def fail(self, peer: str) -> None:
        """Answer 503 to every call of ``peer`` (its /health too)."""
        self.modes[peer] = "fail"

    def hang(self, peer: str, seconds: float) -> None:
        """Hold every call of ``peer`` for ``seconds`` (or until ``heal``), then answer normally."""
        self.modes[peer] = "hang"
        self.hang_until[peer] = time.monotonic() + seconds

    def heal(self, peer: str | None = None) -> None:
        for name in [peer] if peer else list(self.modes):
            self.modes.pop(name, None)
            self.hang_until.pop(name, None)

    # What was seen ---------------------------------------------------------------------------
    def seen(self, peer: str | None = None, path_suffix: str = "", method: str | None = None) -> list[Call]:
        with self.lock:
            return [
                call
                for call in self.calls
                if (peer is None or call.peer == peer)
                and call.path.endswith(path_suffix)
                and (method is None or call.method == method)
            ]


def _peer_of(path: str) -> str:
    if path.startswith("/servers"):
        return SERVER_MANAGER
    if path.startswith("/recordings"):
        return RECORDER
    if path.startswith("/api/v1/monitoring"):
        return MONITOR
    if path.startswith("/api/v1/sessions"):
        return PROCESSOR
    return "health"


def _held(state: PeerState, peers: tuple[str, ...]) -> bool:
    return any(state.modes.get(p) == "hang" and time.monotonic() < state.hang_until.get(p, 0) for p in peers)


def _now() -> str:
    return datetime.now(UTC).isoformat()


def create_peers_app(state: PeerState) -> FastAPI:
    app = FastAPI(title="fake Lucid peers")

    @app.middleware("http")
    async def behave(request: Request, call_next: Any) -> Any:
        peer = _peer_of(request.url.path)
        raw = await request.body()
        body: Any = None
        if raw:
            try:
                body = await request.json()
            except ValueError:
                body = raw.decode(errors="replace")
        call = Call(
            peer,
            request.method,
            request.url.path,
            body,
            request.headers.get("idempotency-key"),
            request.headers.get("authorization"),
            time.monotonic(),
        )
        with state.lock:
            state.calls.append(call)
        targets = PEERS if peer == "health" else (peer,)
        while _held(state, targets):  # noqa: ASYNC110 - polls a flag the test thread sets
            await asyncio.sleep(0.02)
        if any(state.modes.get(p) == "fail" for p in targets):
            return JSONResponse({"detail": "unavailable (test)"}, status_code=503)
        key = call.idempotency_key
        if key is not None:
            with state.lock:
                replay = state.replies.get(f"{call.method} {call.path} {key}")
            if replay is not None:
                return JSONResponse(replay[1], status_code=replay[0])
        response = await call_next(request)
        if key is not None and response.status_code < 500:
            chunks = [chunk async for chunk in response.body_iterator]
            content = b"".join(c if isinstance(c, bytes) else c.encode() for c in chunks)
            data = json.loads(content) if content else None
            with state.lock:
                state.replies[f"{call.method} {call.path} {key}"] = (response.status_code, data)
            return JSONResponse(data, status_code=response.status_code)
        return response

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "healthy"}

    # rdp-server-manager ------------------------------------------------------------------------
    @app.post("/servers", status_code=201)
    async def create_server(body: dict[str, Any]) -> dict[str, Any]:
        if state.create_delay:
            await asyncio.sleep(state.create_delay)
        with state.lock:
            port = FIRST_SERVER_PORT + len(state.servers)
            server = {
                "server_id": str(uuid.uuid4()),
                "status": "running",
                "port": port,
                "created_at": _now(),
                "connection_info": {"host": SERVER_HOST, "port": port, "protocol": "rdp"},
                "user_id": body["user_id"],
                "session_id": body["session_id"],
            }
            state.servers[server["server_id"]] = server
        return server

    @app.get("/servers")
    async def list_servers() -> dict[str, Any]:
        with state.lock:
            return {"servers": list(state.servers.values())}

    @app.get("/servers/{server_id}")
    async def get_server(server_id: str) -> JSONResponse:
        with state.lock:
            server = state.servers.get(server_id)
        if server is None:
            return JSONResponse({"detail": "no such server"}, status_code=404)
        return JSONResponse(server)

    @app.post("/servers/{server_id}/{action}")
    async def server_action(server_id: str, action: str) -> JSONResponse:
        with state.lock:
            server = state.servers.get(server_id)
            if server is None or action not in ("start", "stop", "restart"):
                return JSONResponse({"detail": "no such server"}, status_code=404)
            server["status"] = "stopped" if action == "stop" else "running"
            return JSONResponse(dict(server))

    @app.delete("/servers/{server_id}")
    async def delete_server(server_id: str) -> JSONResponse:
        with state.lock:
            server = state.servers.pop(server_id, None)
        if server is None:
            return JSONResponse({"detail": "no such server"}, status_code=404)
        return JSONResponse({"server_id": server_id, "status": "deleted"})

    # session-recorder --------------------------------------------------------------------------
    @app.post("/recordings/start")
    async def start_recording(body: dict[str, Any]) -> dict[str, Any]:
        recording = {
            "recording_id": str(uuid.uuid4()),
            "session_id": body["session_id"],
            "owner_address": body["owner_address"],
            "metadata": body.get("metadata", {}),
            "status": "recording",
            "started_at": _now(),
        }
        with state.lock:
            state.recordings[body["session_id"]] = recording
        return recording

    @app.post("/recordings/{session_id}/stop")
    async def stop_recording(session_id: str) -> JSONResponse:
        with state.lock:
            recording = state.recordings.get(session_id)
            if recording is None:
                return JSONResponse({"detail": "no recording"}, status_code=404)
            recording["status"] = "stopped"
            recording["stopped_at"] = _now()
            return JSONResponse(dict(recording))

    @app.get("/recordings/{session_id}")
    async def get_recording(session_id: str) -> JSONResponse:
        with state.lock:
            recording = state.recordings.get(session_id)
        if recording is None:
            return JSONResponse({"detail": "no recording"}, status_code=404)
        return JSONResponse(recording)

    # session-processor -------------------------------------------------------------------------
    @app.post("/api/v1/sessions/{session_id}/finalize")
    async def finalize(session_id: str) -> JSONResponse:
        with state.lock:
            if state.processor_knows_only_recorded and session_id not in state.recordings:
                return JSONResponse({"detail": "unknown session"}, status_code=404)
            state.finalized[session_id] = state.finalized.get(session_id, 0) + 1
        return JSONResponse(
            {"session_id": session_id, "merkle_root": "ab" * 32, "finalized": True, "timestamp": _now()}
        )

    # rdp-monitor -------------------------------------------------------------------------------
    @app.post("/api/v1/monitoring/start")
    async def start_monitoring(body: dict[str, Any]) -> dict[str, Any]:
        with state.lock:
            state.monitored[body["session_id"]] = {
                "status": "monitoring",
                "config": body.get("session_config"),
            }
        return {"session_id": body["session_id"], "status": "monitoring"}

    @app.post("/api/v1/monitoring/sessions/{session_id}/stop")
    async def stop_monitoring(session_id: str) -> JSONResponse:
        with state.lock:
            entry = state.monitored.get(session_id)
            if entry is None:
                return JSONResponse({"detail": "not monitored"}, status_code=404)
            entry["status"] = "stopped"
        return JSONResponse({"session_id": session_id, "status": "stopped"})

    @app.get("/api/v1/monitoring/sessions/{session_id}/metrics")
    async def metrics(session_id: str) -> JSONResponse:
        with state.lock:
            known = session_id in state.monitored
        if not known:
            return JSONResponse({"detail": "not monitored"}, status_code=404)
        return JSONResponse({"session_id": session_id, "latency_ms": 12.5, "frames_per_second": 30})

    return app


class PeerServer:
    """The fake peers under uvicorn in a background thread; stop and start again on the same port."""

    def __init__(self, state: PeerState | None = None, port: int | None = None):
        self.state = state or PeerState()
        self.app = create_peers_app(self.state)
        self.port = port or free_loopback_port()
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self, timeout: float = 10.0) -> PeerServer:
        if self.running:
            return self
        config = uvicorn.Config(
            self.app,
            host="127.0.0.1",
            port=self.port,
            log_config=None,
            log_level="warning",
            access_log=False,
            lifespan="off",
            ws="none",
            http="h11",
            loop="asyncio",
            timeout_graceful_shutdown=1,
        )
        server = uvicorn.Server(config)
        thread = threading.Thread(target=server.run, name=f"fake-peers-{self.port}", daemon=True)
        thread.start()
        deadline = time.monotonic() + timeout
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                server.should_exit = True
                raise RuntimeError(f"fake peers did not start on 127.0.0.1:{self.port}")
            time.sleep(0.01)
        self._server, self._thread = server, thread
        return self

    def stop(self, timeout: float = 10.0) -> None:
        if self._server is None or self._thread is None:
            return
        self._server.should_exit = True
        self._thread.join(timeout)
        if self._thread.is_alive():
            raise RuntimeError(f"fake peers on port {self.port} did not stop")
        self._server = self._thread = None

    def restart(self) -> PeerServer:
        self.stop()
        return self.start()

    def __enter__(self) -> PeerServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
