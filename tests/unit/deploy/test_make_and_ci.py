"""The Makefile's deployment targets (dry runs, and host-dirs for real) and the sample CI workflow."""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft7Validator

from tests.unit.deploy.deploy_files import HERE, ROOT, load_yaml

SECTION = "# --- container image and compose deployment (issue 7) ---"
TARGETS = ("image", "up", "down", "logs", "host-dirs", "test-containers")
WORKFLOW = ROOT / ".github" / "workflows" / "integration.yml"
# --env-file order of the template's deployment command (section 12.2).
INTERPOLATION_ORDER = ("secrets", "foundation", "core", "application", "rdp-controller")


def make_dry_run(*arguments: str) -> list[str]:
    if shutil.which("make") is None:
        pytest.fail("make is missing")
    env = {key: value for key, value in os.environ.items() if not key.startswith("MAKE")}
    result = subprocess.run(
        ["make", "--no-print-directory", "-n", *arguments],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.splitlines()


def test_targets_live_in_the_issue_7_section() -> None:
    text = (ROOT / "Makefile").read_text(encoding="utf-8")
    assert text.count(SECTION) == 1
    section = text.split(SECTION, 1)[1]
    phony = [line for line in section.splitlines() if line.startswith(".PHONY:")]
    assert phony == [".PHONY: " + " ".join(TARGETS)]
    for target in TARGETS:
        assert re.search(rf"^{re.escape(target)}:", section, re.M), target
        assert not re.search(rf"^{re.escape(target)}:", text.split(SECTION, 1)[0], re.M), target


def test_image_builds_both_platforms_with_the_template_build_arguments() -> None:
    lines = make_dry_run("image")
    command = " ".join(line.rstrip("\\").strip() for line in lines)
    version = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]["version"]
    assert command.startswith("docker buildx build")
    assert "--platform linux/arm64,linux/amd64" in command
    assert "-f Dockerfile.rdp-controller" in command
    assert "-t pickme/lucid-rdp-controller:latest-arm64" in command
    assert "--build-arg BUILD_DATE=$(date -u +%Y-%m-%dT%H:%M:%SZ)" in command
    assert "--build-arg VCS_REF=$(git rev-parse --short HEAD" in command
    assert f"--build-arg VERSION={version}" in command
    assert command.endswith(" .")
    pushed = " ".join(make_dry_run("image", "IMAGE=example/rdp:test", "IMAGE_OUTPUT=--push"))
    assert "-t example/rdp:test" in pushed and "--push" in pushed


def test_compose_targets_pass_every_env_file_under_lucid_root() -> None:
    env_files = " ".join(
        f"--env-file /srv/lucid/configs/environment/.env.{name}" for name in INTERPOLATION_ORDER
    )
    expected = f"LUCID_ROOT=/srv/lucid docker compose {env_files}"
    up = make_dry_run("up", "LUCID_ROOT=/srv/lucid")
    assert up == [f"{expected}  up -d rdp-controller"]
    assert make_dry_run("up", "LUCID_ROOT=/srv/lucid", "PROFILE=demo", "SERVICES=") == [
        f"{expected} --profile demo up -d "
    ]
    assert make_dry_run("down", "LUCID_ROOT=/srv/lucid") == [f"{expected}  down"]
    assert make_dry_run("logs", "LUCID_ROOT=/srv/lucid") == [f"{expected}  logs -f --tail=200 rdp-controller"]


def test_env_file_flags_match_the_compose_env_files(controller_service: dict[str, Any]) -> None:
    flags = re.findall(r"--env-file (\S+)", make_dry_run("up", "LUCID_ROOT=/srv/lucid")[0])
    names = sorted(Path(flag).name for flag in flags)
    assert names == sorted(Path(item).name for item in controller_service["env_file"])


def test_test_containers_runs_the_container_tier() -> None:
    # The tier itself runs the integration suite with RDP_TEST_BACKEND=testcontainers.
    lines = make_dry_run("test-containers")
    assert lines[-1] == ".venv/bin/pytest tests/containers"
    tier = (ROOT / "tests" / "containers" / "test_testcontainers.py").read_text(encoding="utf-8")
    assert '"RDP_TEST_BACKEND": "testcontainers"' in tier


def test_host_dirs_dry_run() -> None:
    lines = make_dry_run("host-dirs", "LUCID_ROOT=/srv/lucid", "SUDO=sudo")
    dirs = "/srv/lucid/data/rdp-controller /srv/lucid/logs/rdp-controller"
    assert lines == [
        f"sudo mkdir -p {dirs}",
        f"sudo chown -R 65532:65532 {dirs}",
        f"sudo chmod 755 {dirs}",
    ]


def test_host_dirs_creates_owned_directories(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("changing ownership to 65532 needs root (the dry run is checked above)")
    env = {key: value for key, value in os.environ.items() if not key.startswith("MAKE")}
    result = subprocess.run(
        ["make", "--no-print-directory", "host-dirs", f"LUCID_ROOT={tmp_path}", "SUDO="],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    for kind in ("data", "logs"):
        info = (tmp_path / kind / "rdp-controller").stat()
        assert (info.st_uid, info.st_gid) == (65532, 65532)
        assert stat.S_IMODE(info.st_mode) == 0o755


def test_workflow_is_valid_for_github_actions() -> None:
    schema = json.loads((HERE / "github-workflows.json").read_text(encoding="utf-8"))
    workflow = load_yaml(WORKFLOW)
    errors = [f"{list(e.absolute_path)}: {e.message}" for e in Draft7Validator(schema).iter_errors(workflow)]
    assert errors == []


def test_workflow_runs_the_suite_and_builds_arm64() -> None:
    workflow = load_yaml(WORKFLOW)
    steps = {name: job["steps"] for name, job in workflow["jobs"].items()}
    runs = {name: " ".join(step.get("run", "") for step in job) for name, job in steps.items()}
    uses = {name: [step.get("uses", "") for step in job] for name, job in steps.items()}
    assert "make test-containers" in runs["integration"]
    for name in ("integration", "image"):
        assert any(u.startswith("actions/checkout@") for u in uses[name])
        setup = next(s for s in steps[name] if s.get("uses", "").startswith("actions/setup-python@"))
        assert setup["with"]["python-version"] == "3.11"
        assert workflow["jobs"][name]["timeout-minutes"] > 0
    assert any(u.startswith("docker/setup-qemu-action@") for u in uses["image"])
    assert any(u.startswith("docker/setup-buildx-action@") for u in uses["image"])
    assert "make image IMAGE_PLATFORMS=linux/arm64" in runs["image"]
