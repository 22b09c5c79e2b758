"""Helpers of the container tier: env files from the templates, waiting for health, one session over HTTP."""

from __future__ import annotations

import re
import socket
import time
import uuid
from pathlib import Path
from typing import Any

import httpx

from tests.support.app import TEST_SECRET, token
from tests.support.container_engine import ROOT, Engine

TEMPLATES = ROOT / "configs" / "environment"
ENV_FILES = ("secrets", "foundation", "core", "application", "rdp-controller")

# Test values for the settings the templates leave empty (passwords, secrets).
TEST_VALUES = {
    "MONGODB_PASSWORD": "tier-mongo-password",
    "REDIS_PASSWORD": "tier-redis-password",
    "JWT_SECRET_KEY": TEST_SECRET,
    "DEMO_XRDP_PASSWORD": "tier-demo-password",
}


def _expand(value: str, known: dict[str, str]) -> str:
    return re.sub(r"\$\{(\w+)\}", lambda m: known.get(m.group(1), ""), value)


def fill_env_templates(target: Path, overrides: dict[str, str] | None = None) -> dict[str, str]:
    """Write ``target/.env.NAME`` for each template with its empty values filled; return all values.

    ``${VAR}`` references are expanded (compose's ``--env-file`` does the same; podman-compose
    hands env files to podman, which does not, so the written files hold expanded values).
    """
    from rdp_controller.config import RdpControllerSettings

    overrides = dict(overrides or {})
    target.mkdir(parents=True, exist_ok=True)
    known: dict[str, str] = {}
    for name in ENV_FILES:
        lines = []
        for line in (TEMPLATES / f".env.{name}.template").read_text(encoding="utf-8").splitlines():
            match = re.match(r"^([A-Z][A-Z0-9_]*)=(.*)$", line)
            if match is None:
                lines.append(line)
                continue
            key, value = match.groups()
            if key in overrides:
                value = overrides.pop(key)
            elif value == "":
                if key not in TEST_VALUES:
                    raise AssertionError(
                        f".env.{name}.template leaves {key} empty and the tier has no test value"
                    )
                value = TEST_VALUES[key]
            value = _expand(value, known)
            known[key] = value.strip("'")
            lines.append(f"{key}={value}")
        if name == "rdp-controller":
            # A setting the relay work may add before its template line (the relay needs it in production).
            fields = RdpControllerSettings.model_fields
            if (
                "RDP_CONTROLLER_RELAY_PUBLIC_ADDRESS" in fields
                and "RDP_CONTROLLER_RELAY_PUBLIC_ADDRESS" not in known
            ):
                overrides.setdefault("RDP_CONTROLLER_RELAY_PUBLIC_ADDRESS", "127.0.0.1:3389")
            for key, value in list(overrides.items()):
                lines.append(f"{key}={value}")
                known[key] = value
                overrides.pop(key)
        (target / f".env.{name}").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return known


def wait_healthy(engine: Engine, names: list[str], timeout: float = 240) -> dict[str, float]:
    """Run each container's health check until it passes (podman 4.3 has no timers without systemd)."""
    started = time.monotonic()
    passed: dict[str, float] = {}
    last: dict[str, str] = {}
    while time.monotonic() - started < timeout:
        for name in names:
            if name in passed:
                continue
            if engine.is_podman:
                result = engine.run("healthcheck", "run", name, check=False, timeout=60)
                ok = result.returncode == 0
                last[name] = (result.stdout + result.stderr).strip()
            else:
                status = engine.run("inspect", "--format", "{{.State.Health.Status}}", name, check=False)
                ok = status.stdout.strip() == "healthy"
                last[name] = status.stdout.strip()
            if ok:
                passed[name] = time.monotonic() - started
        if len(passed) == len(names):
            return passed
        time.sleep(2)
    raise AssertionError(
        f"not healthy within {timeout:.0f} s: { {n: last.get(n) for n in names if n not in passed} }"
    )


def wait_for_health(base_url: str, want: str = "healthy", timeout: float = 120) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            response = httpx.get(f"{base_url}/health", timeout=5)
            last = (response.status_code, response.text[:300])
            if response.status_code == 200 and response.json()["status"] == want:
                return dict(response.json())
        except httpx.HTTPError as exc:
            last = repr(exc)
        time.sleep(1)
    raise AssertionError(f"{base_url}/health never said {want!r} within {timeout:.0f} s; last: {last}")


def tcp_reachable(host: str, port: int, timeout: float = 5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def drive_session(base_url: str) -> dict[str, Any]:
    """A whole session over HTTP: register a host, create, connect, heartbeat, disconnect, reconnect,
    terminate. Returns the final session."""
    tag = uuid.uuid4().hex[:8]
    operator = {"Authorization": f"Bearer {token('tier-ops', 'operator')}"}
    service = {"Authorization": f"Bearer {token('tier-api', 'service')}"}
    user = f"tier-{tag}"
    alice = {"Authorization": f"Bearer {token(user, 'user')}"}

    def call(method: str, path: str, expect: int, headers: dict[str, str], **kwargs: Any) -> Any:
        response = client.request(method, path, headers=headers, **kwargs)
        assert response.status_code == expect, f"{method} {path}: {response.status_code} {response.text}"
        return response.json() if response.content else None

    with httpx.Client(base_url=base_url, timeout=15.0) as client:
        assert client.get("/api/v1/sessions").status_code == 401
        server = call(
            "POST",
            "/api/v1/servers",
            201,
            operator,
            json={"name": f"tier-host-{tag}", "address": "198.51.100.7", "port": 3389, "capacity": 50},
        )
        created = call(
            "POST",
            "/api/v1/sessions",
            201,
            service,
            json={"user_id": user, "session_config": {"display_resolution": "1280x720", "color_depth": 32}},
        )
        base = f"/api/v1/sessions/{created['session_id']}"
        assert created["status"] == "ready" and created["user_id"] == user, created
        descriptor = call("POST", f"{base}/connect", 200, alice)
        assert descriptor["token"] and "full address:s:" in descriptor["rdp_file"]
        status = call("GET", base, 200, alice)["status"]
        # Direct mode: the session is active once the descriptor is handed out. With the RDP relay
        # on, it stays ready until the client's RDP connection comes through the relay.
        assert status in ("active", "ready"), status
        if status == "active":
            call("POST", f"{base}/activity", 200, alice, json={"bytes_in": 10, "bytes_out": 20})
            assert call("POST", f"{base}/disconnect", 200, alice)["status"] == "suspended"
            assert call("POST", f"{base}/reconnect", 200, alice)["token"]
        ended = call("DELETE", base, 200, alice)
        ended["after_connect"] = status
        assert ended["status"] == "terminated", ended
        assert server["server_id"]
        return dict(ended)
