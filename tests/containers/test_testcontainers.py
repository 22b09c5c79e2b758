"""The integration tier through testcontainers (RDP_TEST_BACKEND=testcontainers) on the engine.

With podman, its Docker-compatible API is served on a socket of this run's own
(``podman system service``); Ryuk is off (podman removes what testcontainers stops) and the
connection mode is docker_host (these machines have a /.dockerenv, which would otherwise make
testcontainers look for a gateway). Runs in a child pytest, whose closing line is printed.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.container_engine import ROOT, Engine, Timings


@pytest.fixture(scope="module")
def docker_host(
    engine: Engine, base_images: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    if engine.cli == "docker":
        yield engine.env.get("DOCKER_HOST", "unix:///var/run/docker.sock")
        return
    socket_path = tmp_path_factory.mktemp("podman-api") / "podman.sock"
    url = f"unix://{socket_path}"
    service = subprocess.Popen(
        ["podman", "system", "service", "--time=0", url],
        env=engine.env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while not socket_path.exists():
            if service.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"podman system service did not create {socket_path}")
            time.sleep(0.2)
        yield url
    finally:
        service.terminate()
        try:
            service.wait(15)
        except subprocess.TimeoutExpired:
            service.kill()
            service.wait(5)


def test_integration_tier_passes_through_testcontainers(
    engine: Engine, docker_host: str, timings: Timings, tmp_path: Path
) -> None:
    env = {
        **engine.env,
        "DOCKER_HOST": docker_host,
        "TESTCONTAINERS_RYUK_DISABLED": "true",
        "TESTCONTAINERS_CONNECTION_MODE": "docker_host",
        "RDP_TEST_BACKEND": "testcontainers",
    }
    report = tmp_path / "integration.log"
    step = timings.step("testcontainers: the integration tier (RDP_TEST_BACKEND=testcontainers)")
    with step, report.open("w") as out:
        result = subprocess.run(
            [sys.executable, "-m", "pytest", "tests/integration", "-q", "-p", "no:cacheprovider", "-x"],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            timeout=2400,
            check=False,
        )
    output = report.read_text(encoding="utf-8", errors="replace")
    lines = [line for line in output.splitlines() if line.strip()]
    backends = [line for line in lines if "integration backends:" in line]
    timings.say(f"[containers] testcontainers tier: {backends[:1]} -> {lines[-1] if lines else 'no output'}")
    assert result.returncode == 0, output[-6000:]
    assert backends and "testcontainers" in backends[0], "the child run did not use testcontainers"
