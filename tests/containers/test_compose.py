"""docker-compose.yml itself, brought up with the env templates filled with test values.

Docker Compose when the engine is Docker, else podman-compose (a dev extra). Every service's
health check must pass (podman 4.3 schedules them with systemd timers, absent here, so the
tier runs ``podman healthcheck run`` in a loop), then a session is driven through the
published port, and every published port of the controller (the relay's too, once compose
publishes it) accepts a TCP connection.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from common.xrdp import free_loopback_port
from tests.support.container_engine import ROOT, Engine, Timings
from tests.support.container_stack import (
    ENV_FILES,
    drive_session,
    fill_env_templates,
    tcp_reachable,
    wait_for_health,
    wait_healthy,
)

COMPOSE_FILE = ROOT / "docker-compose.yml"
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def compose_command(engine: Engine) -> list[str]:
    if engine.cli == "docker":
        return ["docker", "compose"]
    beside = Path(sys.executable).with_name("podman-compose")
    found = str(beside) if beside.exists() else shutil.which("podman-compose")
    if found is None:
        pytest.fail("podman-compose is missing: it is a dev extra (pip install -e '.[dev]')")
    return [found]


def controller_ports() -> dict[int, int]:
    """The controller's published ports: container port -> host port."""
    compose = yaml.safe_load(COMPOSE_FILE.read_text(encoding="utf-8"))
    ports = {}
    for entry in compose["services"]["rdp-controller"].get("ports", []):
        parts = str(entry).split(":")
        ports[int(parts[-1].split("/")[0])] = int(parts[-2])
    return ports


def compose_file_for_this_host(work: Path, timings: Timings) -> tuple[Path, dict[int, int]]:
    """docker-compose.yml itself; outside CI, when a host port it publishes is taken (a developer's
    `make run` on 8092), a copy that differs only in that host port."""
    ports = controller_ports()
    busy = {c: h for c, h in ports.items() if tcp_reachable("127.0.0.1", h, timeout=1)}
    if not busy:
        return COMPOSE_FILE, ports
    if IN_CI:
        pytest.fail(f"compose publishes {sorted(busy.values())} and something already listens there")
    compose = yaml.safe_load(COMPOSE_FILE.read_text(encoding="utf-8"))
    remapped = dict(ports)
    entries = []
    for entry in compose["services"]["rdp-controller"]["ports"]:
        container = int(str(entry).split(":")[-1].split("/")[0])
        if container in busy:
            remapped[container] = free_loopback_port()
            entry = str(entry).rsplit(":", 2)
            entry = ":".join([*entry[:-2], str(remapped[container]), entry[-1]])
        entries.append(entry)
    compose["services"]["rdp-controller"]["ports"] = entries
    copy = work / "docker-compose.yml"
    copy.write_text(yaml.safe_dump(compose, sort_keys=False), encoding="utf-8")
    timings.say(
        f"[containers] NOTE: host ports {sorted(busy.values())} are taken here; the compose run publishes "
        f"{remapped} (container -> host) from a copy of docker-compose.yml differing only there"
    )
    return copy, remapped


@pytest.fixture(scope="module")
def stack(
    engine: Engine, project_image: str, timings: Timings, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, Any]]:
    root = tmp_path_factory.mktemp("lucid-root")
    for sub in ("data/rdp-controller", "logs/rdp-controller"):
        (root / sub).mkdir(parents=True)
        os.chown(root / sub, 65532, 65532)
        (root / sub).chmod(0o755)
    env_dir = root / "configs" / "environment"
    values = fill_env_templates(env_dir, {"PROJECT_ROOT": str(root)})
    combined = root / "compose.env"  # podman-compose takes one --env-file
    combined.write_text(
        "".join((env_dir / f".env.{n}").read_text(encoding="utf-8") for n in ENV_FILES), encoding="utf-8"
    )
    env = {**engine.env, "LUCID_ROOT": str(root)}
    compose_file, ports = compose_file_for_this_host(root, timings)
    base = [*compose_command(engine), "-f", str(compose_file)]
    if engine.cli == "docker":
        base += [arg for n in ENV_FILES for arg in ("--env-file", str(env_dir / f".env.{n}"))]
    else:
        base += ["--env-file", str(combined)]

    def compose(*args: str, check: bool = True, timeout: float = 600) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [*base, *args], env=env, cwd=ROOT, capture_output=True, text=True, timeout=timeout, check=False
        )
        if check and result.returncode != 0:
            raise AssertionError(
                f"compose {' '.join(args)} exited {result.returncode}:\n"
                f"{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
            )
        return result

    compose("down", "-v", check=False)  # leftovers of an interrupted run
    try:
        with timings.step("compose: up -d (default services)"):
            compose("up", "-d")
        with timings.step("compose: every service's health check passes"):
            try:
                took = wait_healthy(engine, ["lucid-mongodb", "lucid-redis", "rdp-controller"], timeout=300)
            except AssertionError:
                logs = engine.run("logs", "--tail", "40", "rdp-controller", check=False)
                raise AssertionError(f"{logs.stdout}{logs.stderr}") from None
        timings.say(
            "[containers] compose health checks passed after (s): "
            + ", ".join(f"{name} {seconds:.1f}" for name, seconds in took.items())
        )
        yield {"values": values, "root": root, "ports": ports, "url": f"http://127.0.0.1:{ports[8092]}"}
    finally:
        with timings.step("compose: down -v"):
            compose("down", "-v", "-t", "10", check=False)
        shutil.rmtree(root, ignore_errors=True)


def test_controller_is_healthy_through_the_published_port(stack: dict[str, Any]) -> None:
    body = wait_for_health(stack["url"], "healthy")
    assert body["environment"] == "production"


def test_a_session_through_the_published_port(stack: dict[str, Any], timings: Timings) -> None:
    with timings.step(f"compose: a session over HTTP on {stack['url']}"):
        ended = drive_session(stack["url"])
    assert ended["status"] == "terminated"
    timings.say(f"[containers] compose session: {ended['after_connect']} after connect, then terminated")


def test_every_published_controller_port_answers(stack: dict[str, Any], timings: Timings) -> None:
    ports = stack["ports"]
    timings.say(f"[containers] compose publishes the controller's ports (container -> host) {ports}")
    assert 8092 in ports
    for container, host in ports.items():
        assert tcp_reachable("127.0.0.1", host), f"published port {host} ({container}) refuses TCP"
