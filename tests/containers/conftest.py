"""The container tier: the image, a hardened run, the compose file and testcontainers, on a real engine.

Docker when its daemon answers, else podman (root; ``containers.conf`` beside this file). Without
an engine the tier skips, except under CI=true, where it fails. RDP_CONTAINER_TIER=skip skips it
outside CI (a developer's quick full run). Each step prints its time; a summary closes the run.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator

import pytest

from tests.support.container_engine import ROOT, Engine, Timings, find_engine
from tests.support.container_images import PROJECT_IMAGE, ensure_images

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
_TIMINGS: Timings | None = None


def _say(config: pytest.Config, line: str) -> None:
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    capture = config.pluginmanager.get_plugin("capturemanager")
    if reporter is None:
        print(line, flush=True)
    elif capture is not None:
        with capture.global_and_fixture_disabled():
            reporter.write_line(line)
    else:
        reporter.write_line(line)


@pytest.fixture(scope="session")
def timings(request: pytest.FixtureRequest) -> Timings:
    global _TIMINGS
    if _TIMINGS is None:
        _TIMINGS = Timings(say=lambda line: _say(request.config, line))
    return _TIMINGS


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if _TIMINGS is None or not _TIMINGS.steps:
        return
    terminalreporter.section("container tier: time per step")
    for name, seconds in _TIMINGS.steps:
        terminalreporter.write_line(f"{seconds:8.1f} s  {name}")
    terminalreporter.write_line(f"{sum(s for _, s in _TIMINGS.steps):8.1f} s  total")


@pytest.fixture(scope="session")
def engine(timings: Timings) -> Engine:
    if not IN_CI and os.environ.get("RDP_CONTAINER_TIER", "").lower() == "skip":
        pytest.skip("RDP_CONTAINER_TIER=skip")
    with timings.step("find a container engine"):
        found, reason = find_engine()
    if found is None:
        if IN_CI:
            pytest.fail(f"container tier: {reason} (CI=true: a missing engine fails the run)")
        pytest.skip(f"container tier: {reason}")
    timings.say(f"[containers] engine: {found.cli} ({reason})")
    return found


@pytest.fixture(scope="session")
def base_images(engine: Engine, timings: Timings) -> dict[str, str]:
    with timings.step("base and backend images (pull, or stand-ins built once and cached)"):
        found = ensure_images(engine, timings)
    banner = ["", "=" * 100, "[containers] IMAGES USED BY THE TIER:"]
    for image, what in found.items():
        banner.append(f"[containers]   {image}: {what}")
    if any(what.startswith("STAND-IN") for what in found.values()):
        banner.append(
            "[containers] STAND-INS are local images under the real names, made here because no registry "
            "answers: they prove the Dockerfile, compose file and service, not the upstream images."
        )
    banner.append("=" * 100)
    timings.say("\n".join(banner))
    return found


def git_revision() -> tuple[str, str]:
    def git(*args: str) -> str:
        result = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, check=False)
        return result.stdout.strip() or "unknown"

    # The commit's own date (not now): unchanged sources rebuild from the layer cache.
    return git("rev-parse", "--short", "HEAD"), git(
        "log", "-1", "--format=%cd", "--date=format:%Y-%m-%dT%H:%M:%SZ"
    )


@pytest.fixture(scope="session")
def project_image(engine: Engine, base_images: dict[str, str], timings: Timings) -> str:
    revision, date = git_revision()
    args = ["build", "-f", "Dockerfile.rdp-controller", "-t", PROJECT_IMAGE]
    args += ["--build-arg", f"BUILD_DATE={date}", "--build-arg", f"VCS_REF={revision}"]
    args += ["--build-arg", "VERSION=1.0.0", *engine.build_volume_args()]
    if engine.is_podman:
        args += ["--format", "docker", "--pull=never"]
    with timings.step(f"build {PROJECT_IMAGE} from Dockerfile.rdp-controller"):
        engine.run(*args, str(ROOT), timeout=1800)
    # (No `image prune`: the untagged images a rebuild leaves are also the builder stage's layer
    # cache, which keeps the next build at seconds instead of ~45 s.)
    return PROJECT_IMAGE


@pytest.fixture(scope="session")
def network(engine: Engine) -> Iterator[str]:
    name = f"lucid-tier-{os.getpid()}"
    engine.run("network", "create", name)
    try:
        yield name
    finally:
        engine.run("network", "rm", "-f", name, check=False)
