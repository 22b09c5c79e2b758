"""The image built from the unchanged Dockerfile: user, shell, entrypoint, health check, labels, size."""

from __future__ import annotations

from typing import Any

import pytest

from tests.support.container_engine import Engine, Timings

HEALTH_PROBE = ["CMD", "/usr/bin/python3.11", "-m", "rdp_controller.healthcheck"]
SHELLS = ["/bin/sh", "/bin/bash", "/bin/dash", "/bin/ash", "/bin/busybox", "/usr/bin/sh", "/usr/bin/bash"]
MAX_SIZE_MB = 250


@pytest.fixture(scope="module")
def config(engine: Engine, project_image: str) -> dict[str, Any]:
    image = engine.inspect("image", project_image)
    config = dict(image["Config"])
    # Docker reports the health check in Config, podman beside it.
    config.setdefault("Healthcheck", image.get("Healthcheck"))
    if config["Healthcheck"] is None:
        config["Healthcheck"] = image.get("Healthcheck")
    return config


def in_image(engine: Engine, image: str, code: str) -> str:
    # The runtime has no shell: run its Python instead (no network, as the image's user).
    result = engine.run(
        "run", "--rm", "--network=none", "--entrypoint", "/usr/bin/python3.11", image, "-c", code
    )
    return result.stdout.strip()


def test_runs_as_65532(config: dict[str, Any], engine: Engine, project_image: str) -> None:
    assert config["User"] == "65532:65532"
    assert in_image(engine, project_image, "import os; print(os.getuid(), os.getgid())") == "65532 65532"


def test_runtime_has_no_shell(engine: Engine, project_image: str) -> None:
    found = in_image(
        engine, project_image, f"import os; print([p for p in {SHELLS!r} if os.path.lexists(p)])"
    )
    assert found == "[]", f"a shell in the runtime image: {found}"
    attempt = engine.run(
        "run", "--rm", "--network=none", "--entrypoint", "/bin/sh", project_image, "-c", "true", check=False
    )
    assert attempt.returncode != 0


def test_entrypoint_is_the_python_script(config: dict[str, Any], engine: Engine, project_image: str) -> None:
    assert not config.get("Entrypoint")
    assert config["Cmd"] == ["/usr/bin/python3.11", "/app/rdp_controller/entrypoint.py"]
    assert (
        in_image(
            engine, project_image, "import os; print(os.path.isfile('/app/rdp_controller/entrypoint.py'))"
        )
        == "True"
    )
    assert config["WorkingDir"] == "/app"
    assert "8092/tcp" in (config.get("ExposedPorts") or {})


def test_health_check_is_kept(config: dict[str, Any]) -> None:
    # podman keeps it only with --format docker (OCI drops HEALTHCHECK silently).
    health = config.get("Healthcheck")
    assert health is not None, "HEALTHCHECK missing from the image"
    assert health["Test"] == HEALTH_PROBE
    assert (health["Interval"], health["Timeout"], health["StartPeriod"], health["Retries"]) == (
        30 * 10**9,
        10 * 10**9,
        40 * 10**9,
        3,
    )


def test_labels(config: dict[str, Any]) -> None:
    labels = config["Labels"]
    assert labels["org.opencontainers.image.title"] == "Lucid RDP Controller"
    assert labels["org.opencontainers.image.version"] == "1.0.0"
    assert labels["org.opencontainers.image.revision"] not in ("", None)
    assert labels["org.opencontainers.image.created"].endswith("Z")
    assert labels["com.lucid.service"] == "rdp-controller"
    assert labels["com.lucid.security"] == "distroless"
    assert labels["com.lucid.cluster"] == "application"


def test_size(engine: Engine, project_image: str, timings: Timings) -> None:
    size = int(engine.inspect("image", project_image)["Size"])
    megabytes = size / 1e6
    timings.say(f"[containers] image {project_image}: {megabytes:.1f} MB ({size} bytes)")
    assert megabytes < MAX_SIZE_MB
