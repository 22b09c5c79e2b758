"""Property-based fuzzing of the whole API from ``openapi.yaml`` (schemathesis 4).

The real app runs under uvicorn in a background thread on a free loopback port, with the real
MongoDB-compatible server and Redis (its rate limiter off: one principal makes every call).
schemathesis reads ``openapi.yaml`` - the document the app serves, which a test below checks -
and calls every operation over HTTP with generated valid and invalid input, authenticated as
operator + service so that every route is reachable. Checks on every response:

* no 5xx, but the documented 503s ``NO_CAPACITY`` and ``DEDICATED_UNAVAILABLE``
  (``not_a_server_error`` otherwise);
* ``status_code_conformance``, ``content_type_conformance``, ``response_headers_conformance``,
  ``response_schema_conformance``: status, content type, headers and body as documented;
* ``negative_data_rejection``: input the schema forbids is refused with a 4xx;
* ``positive_data_acceptance``: input the schema allows is never refused as invalid (400/422), so
  every rule the code enforces on a request's shape is in the document;
* ``ignored_auth``: a successful call is replayed without and with a bad token - both refused;
* ``unsupported_method``: an undocumented method is a 405 with ``Allow``;
* ``allow_header_conformance``: an ``Allow`` (of ``OPTIONS`` or a 405) lists the documented methods.

Bounded and deterministic: a fixed seed (``RDP_FUZZ_SEED``), derandomized Hypothesis,
``RDP_FUZZ_MAX_EXAMPLES`` (25) examples per operation in the fuzzing phase plus the examples and
coverage phases, no shrinking, no example database.
"""

from __future__ import annotations

import json
import os
import re
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import schemathesis
import uvicorn
from schemathesis import Case
from schemathesis.checks import CheckContext, not_a_server_error
from schemathesis.config import SchemathesisConfig
from schemathesis.core.transport import Response
from schemathesis.schemas import BaseSchema
from schemathesis.specs.openapi.checks import (
    allow_header_conformance,
    content_type_conformance,
    ignored_auth,
    negative_data_rejection,
    positive_data_acceptance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
    unsupported_method,
)

from rdp_controller.main import OPENAPI_FILE, create_app
from rdp_controller.models import ID_PATTERN
from rdp_controller.routes.sessions import IDEMPOTENCY_KEY_RE
from tests.support.app import test_settings, token

pytestmark = pytest.mark.integration

FUZZ_SEED = int(os.environ.get("RDP_FUZZ_SEED", "20240601"))
FUZZ_MAX_EXAMPLES = int(os.environ.get("RDP_FUZZ_MAX_EXAMPLES", "25"))
STARTUP_TIMEOUT = 30.0
UUID_RE = re.compile(ID_PATTERN)


# 503 codes openapi.yaml documents for a healthy service: the pool is full, or a dedicated server is
# asked for while rdp-server-manager is not configured (this app runs without it).
DOCUMENTED_503 = {"NO_CAPACITY", "DEDICATED_UNAVAILABLE"}


def no_unexpected_server_error(ctx: CheckContext, response: Response, case: Case) -> bool | None:
    """``not_a_server_error``, except the documented 503s of ``DOCUMENTED_503``."""
    if response.status_code == 503:
        try:
            body = response.json()
        except ValueError:
            body = None
        if isinstance(body, dict) and body.get("error", {}).get("code") in DOCUMENTED_503:
            return True
    return not_a_server_error(ctx, response, case)


CHECKS = [
    no_unexpected_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    response_headers_conformance,
    negative_data_rejection,
    positive_data_acceptance,
    ignored_auth,
    unsupported_method,
    allow_header_conformance,
]
QUIET_LOOPS: dict[str, Any] = {
    "RDP_CONTROLLER_REAPER_INTERVAL": 3600,
    "RDP_CONTROLLER_RECONCILE_INTERVAL": 3600,
    "RDP_CONTROLLER_PROBE_INTERVAL": 3600,
    "RDP_CONTROLLER_OUTBOX_INTERVAL": 3600,
}


class ThreadedServer:
    """uvicorn serving ``app`` on 127.0.0.1 in a daemon thread, lifespan included."""

    def __init__(self, app: Any) -> None:
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._socket.bind(("127.0.0.1", 0))
        port = self._socket.getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        config = uvicorn.Config(
            app,
            lifespan="on",
            log_config=None,
            access_log=False,
            http="h11",
            ws="none",
            timeout_keep_alive=30,
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [self._socket]}, name="fuzz-uvicorn", daemon=True
        )

    def __enter__(self) -> ThreadedServer:
        self._thread.start()
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *_exc: object) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=30)
        self._socket.close()


def wait_until_ready(url: str) -> None:
    """MongoDB indexes created and every background loop through its first round."""
    deadline = time.monotonic() + STARTUP_TIMEOUT
    body: dict[str, Any] = {}
    with httpx.Client(base_url=url, timeout=5) as client:
        while time.monotonic() < deadline:
            body = client.get("/health").json()
            loops = body["components"].get("background", {})
            if (
                body["components"]["mongodb"].get("indexes") == "ready"
                and loops
                and all(state not in ("starting", "waiting for MongoDB") for state in loops.values())
            ):
                return
            time.sleep(0.05)
    raise RuntimeError(f"the app did not become ready: {body}")


@pytest.fixture(scope="module")
def live_url(mongo_url: str, redis_url: str) -> Iterator[str]:
    settings = test_settings(
        mongo_url,
        redis_url,
        RDP_CONTROLLER_RATE_LIMIT_PER_MINUTE=0,  # thousands of calls from one principal
        RDP_CONTROLLER_PROBE_TIMEOUT=0.5,
        **QUIET_LOOPS,
    )
    with ThreadedServer(create_app(settings)) as server:
        wait_until_ready(server.url)
        yield server.url


class Targets:
    """Real resources for the generated ids to point at, made fresh for each operation.

    Random UUIDs only ever reach the 404 branch. So, for each operation, three in four valid
    generated ids are replaced (deterministically, from the id's last byte) by the id of a real
    session - one ready, one active, one suspended, one terminated - or of a real server. Each
    operation gets its own, so an operation that terminates or removes them (the fuzzer runs
    the operations in document order) leaves the next ones something to act on.
    """

    STATES = ("ready", "active", "suspended", "terminated")

    def __init__(self, url: str) -> None:
        self._client = httpx.Client(base_url=url, timeout=10)
        self._operator = {"Authorization": f"Bearer {token('setup', 'operator', 'service')}"}
        self._made: dict[str, dict[str, list[str]]] = {}
        self._serial = 0
        self._key_bodies: dict[str, str] = {}
        # A pool with room (closed loopback ports: a probe fails at once), so sessions can be placed.
        for _ in range(2):
            self._server()

    def close(self) -> None:
        self._client.close()

    def _next(self) -> int:
        self._serial += 1
        return self._serial

    def _call(self, method: str, path: str, expected: int, **kwargs: Any) -> dict[str, Any]:
        response = self._client.request(method, path, headers=self._operator, **kwargs)
        assert response.status_code == expected, (method, path, response.text)
        body: dict[str, Any] = response.json()
        return body

    def _server(self) -> str:
        index = self._next()
        # Loopback, a low port nothing listens on: a probe is refused at once.
        body = {"name": f"fuzz-{index}", "address": "127.0.0.1", "port": 100 + index, "capacity": 1000}
        return str(self._call("POST", "/api/v1/servers", 201, json=body)["server_id"])

    def _session(self, state: str) -> str:
        created = self._call("POST", "/api/v1/sessions", 201, json={"user_id": f"fuzz-user-{self._next()}"})
        sid = str(created["session_id"])
        if state in ("active", "suspended"):
            self._call("POST", f"/api/v1/sessions/{sid}/connect", 200)
        if state == "suspended":
            self._call("POST", f"/api/v1/sessions/{sid}/disconnect", 200)
        if state == "terminated":
            self._call("DELETE", f"/api/v1/sessions/{sid}", 200)
        return sid

    def for_operation(self, label: str, name: str) -> list[str]:
        made = self._made.setdefault(label, {})
        if name not in made:
            made[name] = (
                [self._session(state) for state in self.STATES] if name == "session_id" else [self._server()]
            )
        return made[name]

    def aim(self, case: Case) -> None:
        """Point generated ids at real resources, and vary a valid ``Idempotency-Key`` (all deterministic)."""
        key = (case.headers or {}).get("Idempotency-Key")
        if isinstance(key, str) and IDEMPOTENCY_KEY_RE.fullmatch(key) and len(key) < 120:
            serial = self._next()
            body = json.dumps(case.body, sort_keys=True, default=str)
            # One in four keeps its key, so replays get tested too, but only for the body the key was
            # first sent with: the same key with another body is a 422 IDEMPOTENCY_KEY_REUSED (as the
            # IETF Idempotency-Key draft says), a schema-valid request refused for what was sent
            # before, which positive_data_acceptance cannot tell apart from a document that says too
            # little. tests/integration/sessions/test_lifecycle.py checks that answer.
            if serial % 4 or self._key_bodies.setdefault(key, body) != body:
                case.headers["Idempotency-Key"] = f"{key}.{serial}"
        parameters = case.path_parameters or {}
        names = [name for name in ("session_id", "server_id") if name in parameters]
        for name in names:
            value = parameters[name]
            if isinstance(value, str) and UUID_RE.fullmatch(value):
                pick = int(value[-2:], 16)
                if pick % 4:
                    targets = self.for_operation(case.operation.label, name)
                    parameters[name] = targets[pick % len(targets)]


@pytest.fixture(scope="module")
def targets(live_url: str) -> Iterator[Targets]:
    made = Targets(live_url)
    try:
        yield made
    finally:
        made.close()


def load_schema() -> BaseSchema:
    """``openapi.yaml`` itself (the app serves it unchanged), with the bounded, seeded generation."""
    config = SchemathesisConfig.from_dict(
        {
            "seed": FUZZ_SEED,
            "suppress-health-check": ["too_slow", "filter_too_much", "data_too_large", "large_base_example"],
            "generation": {
                "mode": "all",
                "max-examples": FUZZ_MAX_EXAMPLES,
                "deterministic": True,
                "database": "none",
                "no-shrink": True,
                "with-security-parameters": False,
            },
            "phases": {
                "examples": {"enabled": True},
                "coverage": {"enabled": True},
                "fuzzing": {"enabled": True},
                "stateful": {"enabled": False},
            },
        }
    )
    return schemathesis.openapi.from_path(OPENAPI_FILE, config=config)


# Loaded at collection (a file read, nothing else): schemathesis' lazy ``from_fixture`` loader
# relies on a pytest internal (``Item._nodeid``) that pytest 9 no longer has.
schema = load_schema()


@pytest.fixture(scope="module")
def fuzz_headers() -> dict[str, str]:
    return {"Authorization": f"Bearer {token('fuzz', 'operator', 'service')}"}


USER_HEADERS = {"Authorization": f"Bearer {token('fuzz-user', 'user')}"}


def headers_for(case: Case, privileged: dict[str, str]) -> dict[str, str]:
    """The operator + service token, but a user's for a create that names no ``user_id``.

    Whether ``user_id`` is required depends on the caller, which a schema cannot say: a user
    creates for itself and may omit it, a service or operator must name it (422 otherwise, as
    the operation's description says). The document describes the user's case (optional), so a
    create without ``user_id`` is sent as a user; with one, as the service acting for that user.
    """
    body = case.body
    creates = case.operation.label == "POST /api/v1/sessions"
    if creates and isinstance(body, dict) and body.get("user_id") is None:
        return USER_HEADERS
    return privileged


@schema.parametrize()
def test_api_conforms_to_openapi(
    case: Case, live_url: str, fuzz_headers: dict[str, str], targets: Targets
) -> None:
    targets.aim(case)
    case.call_and_validate(base_url=live_url, headers=headers_for(case, fuzz_headers), checks=CHECKS)


def test_the_app_serves_the_fuzzed_document(live_url: str) -> None:
    served = httpx.get(f"{live_url}/openapi.json", timeout=5).json()
    assert served == schema.raw_schema
