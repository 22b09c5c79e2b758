"""The image run hardened as compose runs it, against MongoDB and Redis containers.

Read-only root, every capability dropped, no-new-privileges, tmpfs /tmp, data and log volumes
owned by 65532, and a port other than 8092 (the health check must follow RDP_CONTROLLER_PORT).
The tests run in file order: the last two stop MongoDB and then the controller.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from common.xrdp import free_loopback_port
from tests.support.container_engine import Engine, Timings
from tests.support.container_images import MONGO_IMAGE, REDIS_IMAGE
from tests.support.container_stack import TEST_VALUES, drive_session, fill_env_templates, wait_for_health

CONTAINER_PORT = 8093


@dataclass
class Run:
    controller: str
    mongo: str
    base_url: str


def start(engine: Engine, *args: str) -> None:
    engine.run("run", "-d", *args, timeout=120)


@pytest.fixture(scope="module")
def hardened(
    engine: Engine,
    project_image: str,
    network: str,
    timings: Timings,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Run]:
    tag = f"{os.getpid()}"
    mongo, redis, controller = f"tier-mongodb-{tag}", f"tier-redis-{tag}", f"tier-rdp-controller-{tag}"
    cache_volume = f"tier-rdp-controller-cache-{tag}"
    work = tmp_path_factory.mktemp("hardened")
    data, logs = work / "data", work / "logs"
    for directory in (data, logs):
        directory.mkdir()
        os.chown(directory, 65532, 65532)
        directory.chmod(0o755)
    values = fill_env_templates(
        work / "env",
        {
            "MONGODB_URL": f"mongodb://lucid:{TEST_VALUES['MONGODB_PASSWORD']}@{mongo}:27017/lucid_rdp?authSource=admin",
            "REDIS_URL": f"redis://:{TEST_VALUES['REDIS_PASSWORD']}@{redis}:6379/0",
            "RDP_CONTROLLER_PORT": str(CONTAINER_PORT),
            "RDP_CONTROLLER_URL": f"http://{controller}:{CONTAINER_PORT}",
        },
    )
    host_port = free_loopback_port()
    names = [controller, redis, mongo]
    try:
        with timings.step("hardened run: start MongoDB, Redis and the controller"):
            start(
                engine,
                *("--name", mongo, "--network", network, "--security-opt", "no-new-privileges"),
                *(
                    "-e",
                    "MONGO_INITDB_ROOT_USERNAME=lucid",
                    "-e",
                    f"MONGO_INITDB_ROOT_PASSWORD={TEST_VALUES['MONGODB_PASSWORD']}",
                ),
                MONGO_IMAGE,
            )
            start(
                engine,
                *("--name", redis, "--network", network, "--security-opt", "no-new-privileges"),
                REDIS_IMAGE,
                *("redis-server", "--requirepass", TEST_VALUES["REDIS_PASSWORD"], "--appendonly", "yes"),
            )
            engine.run("volume", "create", cache_volume)
            env_args = [arg for key, value in values.items() for arg in ("-e", f"{key}={value}")]
            start(
                engine,
                *("--name", controller, "--network", network, "--user", "65532:65532"),
                *("--read-only", "--cap-drop", "ALL", "--security-opt", "no-new-privileges"),
                *("--tmpfs", "/tmp:noexec,nosuid,size=100m"),
                *("-v", f"{data}:/app/data:rw", "-v", f"{logs}:/app/logs:rw"),
                *("-v", f"{cache_volume}:/tmp/rdp-controller"),
                *("-p", f"127.0.0.1:{host_port}:{CONTAINER_PORT}"),
                *env_args,
                project_image,
            )
        run = Run(controller, mongo, f"http://127.0.0.1:{host_port}")
        with timings.step("hardened run: /health healthy"):
            try:
                wait_for_health(run.base_url, "healthy", timeout=180)
            except AssertionError:
                logs_text = engine.run("logs", controller, check=False)
                raise AssertionError(f"{logs_text.stdout[-3000:]}{logs_text.stderr[-3000:]}") from None
        yield run
    finally:
        for name in names:
            engine.run("rm", "-f", "-t", "5", name, check=False, timeout=120)
        engine.run("volume", "rm", "-f", cache_volume, check=False)
        shutil.rmtree(work, ignore_errors=True)


def in_container(engine: Engine, name: str, code: str) -> str:
    return engine.run("exec", name, "/usr/bin/python3.11", "-c", code).stdout.strip()


def test_health_is_healthy_and_the_health_check_passes(engine: Engine, hardened: Run) -> None:
    body = wait_for_health(hardened.base_url, "healthy")
    assert body["components"]["mongodb"]["status"] == "up"
    assert body["environment"] == "production"
    if engine.is_podman:
        result = engine.run("healthcheck", "run", hardened.controller, check=False)
        assert result.returncode == 0, result.stdout + result.stderr
    else:
        assert (
            engine.run(
                "exec", hardened.controller, "/usr/bin/python3.11", "-m", "rdp_controller.healthcheck"
            ).returncode
            == 0
        )


def test_hardening_holds_inside(engine: Engine, hardened: Run) -> None:
    status = in_container(engine, hardened.controller, "print(open('/proc/1/status').read())")
    fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
    assert fields["Uid"].split()[:2] == ["65532", "65532"]
    assert int(fields["CapEff"].strip(), 16) == 0 and int(fields["CapBnd"].strip(), 16) == 0
    assert fields["NoNewPrivs"].strip() == "1"
    probe = (
        "import os\n"
        "def w(p):\n"
        "    try:\n"
        "        open(p, 'w').write('x'); os.remove(p); return 'ok'\n"
        "    except OSError as e:\n"
        "        return e.errno\n"
        "print(w('/app/x'), w('/tmp/x'), w('/app/data/x'), w('/app/logs/x'), w('/tmp/rdp-controller/x'))"
    )
    # 30 = EROFS: the root is read-only; /tmp (tmpfs), the data, log and cache volumes are writable.
    assert in_container(engine, hardened.controller, probe) == "30 ok ok ok ok"


def test_a_whole_session_over_http(hardened: Run, timings: Timings) -> None:
    with timings.step("hardened run: a session over HTTP"):
        ended = drive_session(hardened.base_url)
    assert ended["termination_reason"] == "user_request"


def test_health_check_fails_with_mongodb_down(engine: Engine, hardened: Run, timings: Timings) -> None:
    with timings.step("hardened run: MongoDB down -> /health 503 and the health check fails"):
        engine.run("stop", "-t", "5", hardened.mongo, timeout=120)
        wait_for_health_status(hardened.base_url, 503)
        if engine.is_podman:
            result = engine.run("healthcheck", "run", hardened.controller, check=False)
        else:
            result = engine.run(
                "exec",
                hardened.controller,
                "/usr/bin/python3.11",
                "-m",
                "rdp_controller.healthcheck",
                check=False,
            )
        assert result.returncode != 0, result.stdout + result.stderr


def test_sigterm_stops_with_exit_code_0(engine: Engine, hardened: Run, timings: Timings) -> None:
    with timings.step("hardened run: SIGTERM -> exit 0"):
        engine.run("kill", "--signal", "TERM", hardened.controller)
        code = engine.run("wait", hardened.controller, timeout=60).stdout.strip()
    assert code == "0", engine.run("logs", "--tail", "30", hardened.controller, check=False).stderr


def wait_for_health_status(base_url: str, status: int, timeout: float = 60) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        try:
            last = httpx.get(f"{base_url}/health", timeout=15).status_code
            if last == status:
                return
        except httpx.HTTPError as exc:
            last = repr(exc)
        time.sleep(1)
    raise AssertionError(f"/health never answered {status} within {timeout:.0f} s; last {last}")
