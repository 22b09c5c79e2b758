"""The env templates and the compose environment against RdpControllerSettings."""

from __future__ import annotations

import re
import subprocess
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from tests.unit.deploy.deploy_files import (
    COMPOSE_FILE,
    COMPOSE_ONLY,
    ENV_DIR,
    ENV_FILE_NAMES,
    LOADER_ONLY,
    ROOT,
    SERVICE_ENV_TEMPLATE,
    EnvEntry,
    env_values,
    interpolate,
    load_yaml,
    template_path,
)

SECRET_NAME = re.compile(r"PASSWORD|SECRET|_KEY$|TOKEN")
PRODUCTION_REQUIRED = ("MONGODB_URL", "REDIS_URL", "JWT_SECRET_KEY")


def fill_secrets(text: str) -> str:
    """What an operator does to .env.secrets: every empty secret gets a value (URL-safe, 40 chars)."""
    return re.sub(
        r"^([A-Z_]+)=$", lambda m: f"{m[1]}={m[1].lower().replace('_', '-'):x<40}", text, flags=re.M
    )


def deployment_environment(fill: bool = True) -> tuple[dict[str, str], dict[str, str]]:
    """(interpolation variables, rdp-controller's container environment) as Compose builds them.

    Interpolation: the --env-file files `make up` passes. Container: env_file in order, then
    `environment:` on top (it wins, as in Compose).
    """
    texts = {name: template_path(name).read_text(encoding="utf-8") for name in ENV_FILE_NAMES}
    if fill:
        texts["secrets"] = fill_secrets(texts["secrets"])
    variables: dict[str, str] = {}
    for name in ("secrets", "foundation", "core", "application", "rdp-controller"):
        variables.update(env_values(texts[name]))
    service = interpolate(load_yaml(COMPOSE_FILE)["services"]["rdp-controller"], variables)
    container: dict[str, str] = {}
    for name in ENV_FILE_NAMES:
        container.update(env_values(texts[name]))
    container.update(dict(item.split("=", 1) for item in service["environment"]))
    return variables, container


def test_each_template_exists_and_the_service_template_is_the_source() -> None:
    for name in ENV_FILE_NAMES:
        assert template_path(name).is_file()
    copy = ENV_DIR / ".env.rdp-controller.template"
    assert copy.read_bytes() == SERVICE_ENV_TEMPLATE.read_bytes(), (
        "configs/environment/.env.rdp-controller.template must be a copy of "
        "rdp-controller/config/env.rdp-controller.template (the source): cp the latter over the former"
    )


def test_every_template_variable_is_a_setting_or_a_documented_exception(
    env_entries: list[EnvEntry], settings_fields: dict[str, Any]
) -> None:
    unknown = [
        f"{e.file}:{e.line} {e.name}"
        for e in env_entries
        if e.name not in settings_fields and e.name not in COMPOSE_ONLY and e.name not in LOADER_ONLY
    ]
    assert unknown == [], "not a field of RdpControllerSettings; a typo, or document it as an exception"


def test_every_setting_is_documented_in_exactly_one_template(
    env_entries: list[EnvEntry], settings_fields: dict[str, Any]
) -> None:
    counts = Counter(e.name for e in env_entries)
    missing = sorted(name for name in settings_fields if name not in counts)
    assert missing == [], "settings no env template mentions (add `NAME=` or `# NAME=default` lines)"
    duplicated = sorted(name for name, count in counts.items() if count > 1)
    assert duplicated == [], "one template per variable, so that env_file order cannot hide a value"


def test_every_variable_is_commented_with_its_default(env_entries: list[EnvEntry]) -> None:
    undocumented = [f"{e.file}:{e.line} {e.name}" for e in env_entries if "default" not in e.doc.lower()]
    assert undocumented == [], "each variable needs a comment above it: its meaning and its default"


def test_documented_defaults_are_the_settings_defaults(
    env_entries: list[EnvEntry], settings_fields: dict[str, Any]
) -> None:
    for entry in env_entries:
        field = settings_fields.get(entry.name)
        if field is None or field.default_factory is not None:
            continue
        default = field.default
        shown = str(default).lower() if isinstance(default, bool) else str(default)
        if shown == "":
            assert re.search(r"default: (empty|unset|none)|no default", entry.doc), entry
        else:
            assert f"default: {shown}" in entry.doc, (
                f"{entry.file}:{entry.line} {entry.name}: default {shown}"
            )


def test_exceptions_are_real(settings_fields: dict[str, Any]) -> None:
    compose_text = COMPOSE_FILE.read_text(encoding="utf-8")
    for name in COMPOSE_ONLY:
        assert name not in settings_fields
        assert "${" + name in compose_text, (
            f"{name} is listed as compose-only but the compose file does not use it"
        )
    config_source = (ROOT / "rdp-controller" / "config.py").read_text(encoding="utf-8")
    for name in LOADER_ONLY:
        assert name not in settings_fields
        assert f'"{name}"' in config_source


def test_secrets_are_placeholders(env_entries: list[EnvEntry]) -> None:
    for name in ENV_FILE_NAMES:
        values = env_values(template_path(name).read_text(encoding="utf-8"))
        for key, value in values.items():
            if SECRET_NAME.search(key):
                assert name == "secrets", f"{key} belongs in .env.secrets.template"
                assert value == "", f".env.{name}.template: {key} must stay an empty placeholder"
    secrets = {e.name for e in env_entries if e.file == ".env.secrets.template"}
    assert {"MONGODB_URL", "REDIS_URL", "JWT_SECRET_KEY"} <= secrets


def test_compose_environment_sets_only_settings(
    controller_service: dict[str, Any], settings_fields: dict[str, Any]
) -> None:
    names = [item.split("=", 1)[0] for item in controller_service["environment"]]
    assert [n for n in names if n not in settings_fields] == []
    assert len(names) == len(set(names))


def test_filled_in_deployment_passes_the_production_checks(
    clean_environment: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    from rdp_controller.config import RdpControllerConfig

    _, container = deployment_environment()
    for required in PRODUCTION_REQUIRED:
        assert container.get(required), f"{required} is not provided by the compose file or env files"
    for key, value in container.items():
        monkeypatch.setenv(key, value)
    settings = RdpControllerConfig(validate=False).settings
    assert settings.is_production
    assert settings.problems() == []
    assert settings.MONGODB_URL.startswith("mongodb://lucid:mongodb-password")
    assert "@lucid-mongodb:27017/" in settings.MONGODB_URL
    assert (
        settings.REDIS_URL.startswith("redis://:redis-password")
        and "@lucid-redis:6379/" in settings.REDIS_URL
    )
    assert settings.RDP_CONTROLLER_PORT == 8092
    assert [server.address for server in settings.RDP_CONTROLLER_SERVERS] == ["demo-xrdp"]


def test_unfilled_secrets_are_refused(clean_environment: None, monkeypatch: pytest.MonkeyPatch) -> None:
    from rdp_controller.config import RdpControllerConfig

    variables, container = deployment_environment(fill=False)
    assert variables["MONGODB_PASSWORD"] == "" and variables["REDIS_PASSWORD"] == ""
    for key, value in container.items():
        monkeypatch.setenv(key, value)
    problems = RdpControllerConfig(validate=False).settings.problems()
    assert any(problem.startswith("JWT_SECRET_KEY") for problem in problems), problems


def test_real_env_files_are_not_committed() -> None:
    probe = subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "--is-inside-work-tree"],
        capture_output=True,
        text=True,
        check=False,
    )
    if probe.returncode != 0:
        pytest.skip("not a git work tree")
    for name in ENV_FILE_NAMES:
        real = Path("configs/environment") / f".env.{name}"
        ignored = subprocess.run(["git", "-C", str(ROOT), "check-ignore", "-q", str(real)], check=False)
        assert ignored.returncode == 0, f"{real} (a filled-in copy holds secrets) must be git-ignored"
        template = Path("configs/environment") / f".env.{name}.template"
        kept = subprocess.run(["git", "-C", str(ROOT), "check-ignore", "-q", str(template)], check=False)
        assert kept.returncode == 1, f"{template} must not be git-ignored"
