"""Cross-build the image for linux/arm64 with podman under QEMU, and run it until /health answers.

Not part of the container tier, of ``make test`` or of CI (too slow: CI checks amd64). Run it by hand,
as root, from the repository root (docs/testing.md, "arm64"), preferably under ``nice``:

    nice -n 19 .venv/bin/python tests/containers/arm64_build.py

It needs qemu-user-static with ``qemu-aarch64`` registered in binfmt_misc (flag F). The arm64
stand-ins of the two base images (builder: debootstrap ``--arch=arm64``; runtime: the arm64 Debian
packages unpacked) are built with the tier's own code under the names the Dockerfile uses, in a
storage of their own (``ARM64_STORAGE``), so the tier's amd64 images under the same names stay as
they are; they are cached there between runs. The controller runs with ``--network host`` against
the embedded dev stack (MongoDB- and Redis-compatible servers on 127.0.0.1).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from common.xrdp import free_loopback_port
from tests.support.container_engine import ROOT, Engine, Timings, engine_env
from tests.support.container_images import (
    BUILDER_IMAGE,
    PROJECT_IMAGE,
    RECIPE_LABEL,
    RUNTIME_IMAGE,
    build_builder_standin,
    build_runtime_standin,
    recipe,
)
from tests.support.container_stack import drive_session, fill_env_templates, wait_for_health

ARCH = "arm64"
ARM64_STORAGE = Path(os.environ.get("ARM64_STORAGE", "/var/lib/containers/lucid-arm64"))
BINFMT = Path("/proc/sys/fs/binfmt_misc/qemu-aarch64")


def arm64_engine() -> Engine:
    ARM64_STORAGE.mkdir(parents=True, exist_ok=True)
    conf = ARM64_STORAGE / "storage.conf"
    conf.write_text(
        f'[storage]\ndriver = "overlay"\ngraphroot = "{ARM64_STORAGE}/storage"\n'
        f'runroot = "/run/containers/lucid-arm64"\n',
        encoding="utf-8",
    )
    return Engine("podman", {**engine_env(), "CONTAINERS_STORAGE_CONF": str(conf)})


def wait_until_healthy(engine: Engine, name: str, base_url: str, timeout: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        try:
            return wait_for_health(base_url, "healthy", timeout=5)
        except AssertionError:
            running = engine.inspect("container", name)["State"]["Running"]
            if running and time.monotonic() < deadline:
                continue
            logs = engine.run("logs", name, check=False)
            print(logs.stdout[-3000:] + logs.stderr[-3000:], file=sys.stderr)
            raise


def main() -> int:
    timings = Timings()
    if not BINFMT.exists() or not BINFMT.read_text(encoding="utf-8").startswith("enabled"):
        print(
            f"{BINFMT} is missing or disabled: apt-get install qemu-user-static binfmt-support",
            file=sys.stderr,
        )
        return 2
    engine = arm64_engine()
    with tempfile.TemporaryDirectory(prefix="lucid-arm64-", dir="/var/tmp") as tmp:
        work = Path(tmp)
        for image, build in ((BUILDER_IMAGE, build_builder_standin), (RUNTIME_IMAGE, build_runtime_standin)):
            if engine.exists(image):
                labels = engine.inspect("image", image)["Config"].get("Labels") or {}
                if labels.get(RECIPE_LABEL) == recipe(image, ARCH):
                    timings.say(f"[arm64] stand-in {image}: cached")
                    continue
            with timings.step(f"arm64 stand-in {image}"):
                timings.say("[arm64]   " + build(engine, work, ARCH))
            size = engine.inspect("image", image)["Size"]
            timings.say(f"[arm64]   {image}: {size / 1e6:.1f} MB")

        log = ARM64_STORAGE / "build.log"
        with timings.step("podman build --platform linux/arm64 (Dockerfile.rdp-controller, unchanged)"):
            args = [
                *("build", "--platform", f"linux/{ARCH}", "--format", "docker", "--pull=never"),
                *engine.build_volume_args(),
                *("--build-arg", f"BUILD_DATE={time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())}"),
                *("--build-arg", "VCS_REF=arm64-check", "--build-arg", "VERSION=1.0.0"),
                *("-t", PROJECT_IMAGE, "-f", str(ROOT / "Dockerfile.rdp-controller"), str(ROOT)),
            ]
            with log.open("w", encoding="utf-8") as out:
                code = subprocess.run(
                    [engine.cli, *args], env=engine.env, stdout=out, stderr=subprocess.STDOUT, check=False
                ).returncode
            if code != 0:
                print(log.read_text(encoding="utf-8")[-6000:], file=sys.stderr)
                print(f"[arm64] the build failed (exit {code}); whole log: {log}", file=sys.stderr)
                return 1
        info = engine.inspect("image", PROJECT_IMAGE)
        timings.say(
            f"[arm64] {PROJECT_IMAGE}: architecture {info['Architecture']}, {info['Size'] / 1e6:.1f} MB, "
            f"user {info['Config'].get('User')}, "
            f"health check {info['Config'].get('Healthcheck') or info.get('Healthcheck')}"
        )

        from tests.support.backends import start_backends

        backends = start_backends("embedded")
        # LUCID_ENV=production refuses localhost URLs: the servers on 127.0.0.1 go by the compose
        # service names (--add-host), as on a Pi.
        mongodb_url = re.sub(r"//(localhost|127\.0\.0\.1):", "//lucid-mongodb:", backends.mongodb_url)
        redis_url = re.sub(r"//(localhost|127\.0\.0\.1):", "//lucid-redis:", backends.redis_url)
        port, relay_port = free_loopback_port(), free_loopback_port()
        values = fill_env_templates(
            work / "env",
            {
                "MONGODB_URL": mongodb_url,
                "REDIS_URL": redis_url,
                "RDP_CONTROLLER_PORT": str(port),
                "RDP_CONTROLLER_URL": f"http://127.0.0.1:{port}",
                "RDP_CONTROLLER_RELAY_PORT": str(relay_port),
            },
        )
        name = f"arm64-rdp-controller-{os.getpid()}"
        env_args = [arg for key, value in values.items() for arg in ("-e", f"{key}={value}")]
        try:
            with timings.step("run the arm64 image under QEMU until /health answers healthy"):
                engine.run(
                    *("run", "-d", "--name", name, "--network", "host", "--user", "65532:65532"),
                    *("--add-host", "lucid-mongodb:127.0.0.1", "--add-host", "lucid-redis:127.0.0.1"),
                    *("--read-only", "--cap-drop", "ALL", "--security-opt", "no-new-privileges"),
                    *(
                        "--tmpfs",
                        "/tmp:noexec,nosuid,size=100m",
                        "--tmpfs",
                        "/app/data",
                        "--tmpfs",
                        "/app/logs",
                    ),
                    *env_args,
                    PROJECT_IMAGE,
                    timeout=300,
                )
                body = wait_until_healthy(engine, name, f"http://127.0.0.1:{port}", timeout=600)
            timings.say(f"[arm64] /health: {body}")
            machine = engine.run(
                "exec", name, "/usr/bin/python3.11", "-c", "import platform; print(platform.machine())"
            )
            timings.say(f"[arm64] platform.machine() in the container: {machine.stdout.strip()}")
            with timings.step("the image's HEALTHCHECK (podman healthcheck run)"):
                check = engine.run("healthcheck", "run", name, check=False, timeout=120)
                timings.say(f"[arm64] health check exit code {check.returncode}")
            with timings.step("a whole session over HTTP"):
                ended = drive_session(f"http://127.0.0.1:{port}")
                timings.say(f"[arm64] session {ended['session_id']}: {ended['status']}")
            with timings.step("stop (SIGTERM)"):
                engine.run("stop", "-t", "60", name, timeout=180)
                state = engine.inspect("container", name)["State"]
                timings.say(f"[arm64] exit code {state['ExitCode']}")
        finally:
            engine.run("rm", "-f", "-t", "5", name, check=False, timeout=120)
            backends.stop()
    for step, seconds in timings.steps:
        print(f"{seconds:8.1f} s  {step}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
