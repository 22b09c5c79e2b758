"""Fixtures of the deployment checks (parsers in deploy_files.py)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.unit.deploy.deploy_files import (
    COMPOSE_FILE,
    COMPOSE_ONLY,
    DOCKERFILE,
    ENV_FILE_NAMES,
    LOADER_ONLY,
    EnvEntry,
    Instruction,
    load_yaml,
    parse_dockerfile,
    parse_env_template,
    template_path,
)


@pytest.fixture(scope="session")
def compose() -> dict[str, Any]:
    data = load_yaml(COMPOSE_FILE)
    assert isinstance(data, dict)
    return data


@pytest.fixture(scope="session")
def controller_service(compose: dict[str, Any]) -> dict[str, Any]:
    service = compose["services"]["rdp-controller"]
    assert isinstance(service, dict)
    return service


@pytest.fixture(scope="session")
def dockerfile() -> list[Instruction]:
    return parse_dockerfile(DOCKERFILE)


@pytest.fixture(scope="session")
def settings_fields() -> dict[str, Any]:
    from rdp_controller.config import RdpControllerSettings

    return dict(RdpControllerSettings.model_fields)


@pytest.fixture(scope="session")
def env_entries() -> list[EnvEntry]:
    entries: list[EnvEntry] = []
    for name in ENV_FILE_NAMES:
        entries.extend(parse_env_template(template_path(name)))
    return entries


@pytest.fixture
def clean_environment(monkeypatch: pytest.MonkeyPatch, settings_fields: dict[str, Any]) -> Iterator[None]:
    """No setting, compose variable or loader variable leaks in from the test process."""
    for name in [*settings_fields, *COMPOSE_ONLY, *LOADER_ONLY]:
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)
    yield
