"""rdp-controller/healthcheck.py: the image's HEALTHCHECK (GET /health on RDP_CONTROLLER_PORT)."""

from __future__ import annotations

import ast
import json
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from rdp_controller import healthcheck
from tests.unit.deploy.deploy_files import ROOT

MODULE = ROOT / "rdp-controller" / "healthcheck.py"


def serve_health(status: int, body: dict[str, str]) -> tuple[ThreadingHTTPServer, threading.Thread]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            payload = json.dumps(body).encode() if self.path == "/health" else b"{}"
            self.send_response(status if self.path == "/health" else 404)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    return server, thread


@pytest.fixture
def health_server(request: pytest.FixtureRequest) -> Iterator[int]:
    status, body = request.param
    server, thread = serve_health(status, body)
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def run_module(port: int | str) -> subprocess.CompletedProcess[str]:
    # As the image runs it: `python -m rdp_controller.healthcheck` with the port in the environment.
    env = {**os.environ, "RDP_CONTROLLER_PORT": str(port)}
    return subprocess.run(
        [sys.executable, "-m", "rdp_controller.healthcheck"],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


@pytest.mark.parametrize(
    ("health_server", "code"),
    [
        ((200, {"status": "healthy"}), 0),
        ((200, {"status": "degraded"}), 0),
        ((503, {"status": "unhealthy"}), 1),
        ((500, {"detail": "boom"}), 1),
    ],
    indirect=["health_server"],
    ids=["healthy", "degraded", "unhealthy-503", "error-500"],
)
def test_exit_code_follows_the_health_status(health_server: int, code: int) -> None:
    result = run_module(health_server)
    assert result.returncode == code, result.stdout + result.stderr
    assert f"port {health_server}" in result.stdout


def test_a_closed_port_fails() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    result = run_module(port)
    assert result.returncode == 1
    assert "FAILED" in result.stdout


@pytest.mark.parametrize("value", ["http", "0", "70000"])
def test_an_invalid_port_fails(value: str) -> None:
    result = run_module(value)
    assert result.returncode == 1
    assert "invalid RDP_CONTROLLER_PORT" in result.stdout


def test_port_defaults_to_8092() -> None:
    assert healthcheck.port_from_env({}) == 8092
    assert healthcheck.port_from_env({"RDP_CONTROLLER_PORT": ""}) == 8092
    assert healthcheck.port_from_env({"RDP_CONTROLLER_PORT": "9100"}) == 9100


def test_module_uses_the_standard_library_only() -> None:
    # The runtime image runs it in a fresh interpreter; keep it free of the service's dependencies.
    tree = ast.parse(MODULE.read_text(encoding="utf-8"))
    imported = {
        (node.module or "").split(".")[0] if isinstance(node, ast.ImportFrom) else alias.name.split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, ast.Import | ast.ImportFrom)
        for alias in node.names
    }
    assert imported <= set(sys.stdlib_module_names) | {"__future__"}, imported
