"""docker-compose.yml: the Compose Specification schema, the template's service entry, the stack."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator

from tests.unit.deploy.deploy_files import (
    DEFAULT_LUCID_ROOT,
    ENV_DIR,
    ENV_FILE_NAMES,
    HERE,
    LUCID_ROOT_PREFIX,
    ROOT,
    MissingVariable,
    env_values,
    interpolate,
)

NETWORK = "lucid-pi-network"
TEMPLATE_LABELS = [
    "lucid.service=rdp-controller",
    "lucid.type=distroless",
    "lucid.platform=arm64",
    "lucid.security=hardened",
    "lucid.cluster=application",
]


def schema_errors(document: Any) -> list[str]:
    schema = json.loads((HERE / "compose-spec.json").read_text(encoding="utf-8"))
    validator = Draft202012Validator(schema)
    return [
        f"{'/'.join(str(p) for p in error.absolute_path) or '(root)'}: {error.message}"
        for error in sorted(validator.iter_errors(document), key=lambda e: list(e.absolute_path))
    ]


def filled_variables() -> dict[str, str]:
    """What `make up` gives Compose for interpolation: the five env files, secrets filled in."""
    variables: dict[str, str] = {"LUCID_ROOT": "/srv/lucid"}
    for name in ("secrets", "foundation", "core", "application", "rdp-controller"):
        text = (ENV_DIR / f".env.{name}.template").read_text(encoding="utf-8")
        text = re.sub(
            r"^(MONGODB_PASSWORD|REDIS_PASSWORD|DEMO_XRDP_PASSWORD)=$", r"\1=pw-\1", text, flags=re.M
        )
        variables.update(env_values(text))
    return variables


def test_schema_file_is_the_vendored_compose_spec() -> None:
    schema = json.loads((HERE / "compose-spec.json").read_text(encoding="utf-8"))
    assert schema["title"] == "Compose Specification"
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    Draft202012Validator.check_schema(schema)


def test_compose_file_is_valid_as_written(compose: dict[str, Any]) -> None:
    assert schema_errors(compose) == []


def test_compose_file_is_valid_after_interpolation(compose: dict[str, Any], clean_environment: None) -> None:
    assert schema_errors(interpolate(compose, filled_variables())) == []


@pytest.mark.parametrize(
    ("service", "key", "value", "message"),
    [
        ("rdp-controller", "restart_policy", "always", "'restart_policy' was unexpected"),
        ("lucid-redis", "networks", 5, "is not valid"),
        ("rdp-controller", "healthcheck", {"test": ["CMD", "true"], "intervall": "30s"}, "'intervall'"),
    ],
)
def test_schema_catches_a_mistake(
    compose: dict[str, Any], service: str, key: str, value: Any, message: str
) -> None:
    broken = json.loads(json.dumps(compose))
    broken["services"][service][key] = value
    errors = "\n".join(schema_errors(broken))
    assert f"services/{service}" in errors and message in errors, errors


@pytest.mark.parametrize("variable", ["MONGODB_URL", "REDIS_URL", "MONGODB_PASSWORD", "REDIS_PASSWORD"])
def test_required_variables_stop_compose_when_unset(
    compose: dict[str, Any], variable: str, clean_environment: None
) -> None:
    variables = filled_variables()
    variables[variable] = ""
    with pytest.raises(MissingVariable, match=variable):
        interpolate(compose, variables)


def test_services_share_the_pi_network(compose: dict[str, Any]) -> None:
    assert set(compose["services"]) == {"lucid-mongodb", "lucid-redis", "rdp-controller", "demo-xrdp"}
    for name, service in compose["services"].items():
        assert list(service["networks"]) == [NETWORK], name
        assert service.get("container_name") == name
    assert compose["networks"][NETWORK]["name"] == NETWORK


def test_controller_follows_the_template(controller_service: dict[str, Any]) -> None:
    service = controller_service
    assert service["image"] == "pickme/lucid-rdp-controller:latest-arm64"
    assert service["restart"] == "unless-stopped"
    assert service["user"] == "65532:65532"
    assert service["read_only"] is True
    assert service["cap_drop"] == ["ALL"]
    assert "cap_add" not in service, "8092 needs no NET_BIND_SERVICE"
    assert "no-new-privileges:true" in service["security_opt"]
    assert service["tmpfs"] == ["/tmp:noexec,nosuid,size=100m"]
    assert service["labels"] == TEMPLATE_LABELS
    assert service["networks"] == {NETWORK: {}}
    health = service["healthcheck"]
    assert (health["interval"], health["timeout"], health["retries"], health["start_period"]) == (
        "30s",
        "10s",
        3,
        "40s",
    )


def test_controller_waits_for_healthy_databases_only(controller_service: dict[str, Any]) -> None:
    # The template's tor-proxy dependency does not exist in this stack.
    assert controller_service["depends_on"] == {
        "lucid-mongodb": {"condition": "service_healthy"},
        "lucid-redis": {"condition": "service_healthy"},
    }


def test_controller_env_files_are_the_templates_under_an_overridable_root(
    controller_service: dict[str, Any],
) -> None:
    files = controller_service["env_file"]
    expected = [f"{LUCID_ROOT_PREFIX}/configs/environment/.env.{name}" for name in ENV_FILE_NAMES]
    assert files == expected
    for name in ENV_FILE_NAMES:
        assert (ENV_DIR / f".env.{name}.template").is_file()


def test_controller_volumes_and_cache(compose: dict[str, Any], controller_service: dict[str, Any]) -> None:
    assert controller_service["volumes"] == [
        f"{LUCID_ROOT_PREFIX}/data/rdp-controller:/app/data:rw",
        f"{LUCID_ROOT_PREFIX}/logs/rdp-controller:/app/logs:rw",
        "rdp-controller-cache:/tmp/rdp-controller",
    ]
    assert compose["volumes"]["rdp-controller-cache"] == {
        "driver": "local",
        "name": "lucid-rdp-controller-cache",
        "external": False,
    }


def test_host_paths_default_to_the_templates(compose: dict[str, Any], clean_environment: None) -> None:
    variables = filled_variables()
    del variables["LUCID_ROOT"]
    service = interpolate(compose, variables)["services"]["rdp-controller"]
    assert service["env_file"][0] == f"{DEFAULT_LUCID_ROOT}/configs/environment/.env.secrets"
    assert service["volumes"][0] == f"{DEFAULT_LUCID_ROOT}/data/rdp-controller:/app/data:rw"
    environment = dict(item.split("=", 1) for item in service["environment"])
    assert environment["PROJECT_ROOT"] == DEFAULT_LUCID_ROOT


def test_controller_environment_follows_the_template(controller_service: dict[str, Any]) -> None:
    environment = dict(item.split("=", 1) for item in controller_service["environment"])
    assert environment["LUCID_ENV"] == "production"
    assert environment["LUCID_PLATFORM"] == "arm64"
    assert environment["RDP_CONTROLLER_HOST"] == "rdp-controller"
    assert environment["RDP_CONTROLLER_URL"] == "http://rdp-controller:8092"
    assert environment["LUCID_STORAGE_PATH"] == "/app/data"
    assert environment["MONGODB_URL"].startswith("${MONGODB_URL:?")
    assert environment["REDIS_URL"].startswith("${REDIS_URL:?")


def test_databases_are_pinned_persistent_and_checked(compose: dict[str, Any]) -> None:
    mongo = compose["services"]["lucid-mongodb"]
    assert re.fullmatch(r"mongo:7\.0\.\d+", mongo["image"])
    assert mongo["environment"]["MONGO_INITDB_ROOT_USERNAME"].startswith("${MONGODB_USER")
    assert mongo["environment"]["MONGO_INITDB_ROOT_PASSWORD"].startswith("${MONGODB_PASSWORD:?")
    assert "mongosh" in mongo["healthcheck"]["test"] and "ping" in " ".join(mongo["healthcheck"]["test"])
    assert mongo["volumes"] == ["lucid-mongodb-data:/data/db"]

    redis = compose["services"]["lucid-redis"]
    assert re.fullmatch(r"redis:7\.2\.\d+-alpine", redis["image"])
    command = redis["command"]
    assert command[command.index("--requirepass") + 1].startswith("${REDIS_PASSWORD:?")
    assert command[command.index("--appendonly") + 1] == "yes"
    probe = " ".join(redis["healthcheck"]["test"])
    assert "redis-cli" in probe and " -a " in probe and "ping" in probe
    assert redis["volumes"] == ["lucid-redis-data:/data"]

    for volume in ("lucid-mongodb-data", "lucid-redis-data"):
        assert compose["volumes"][volume]["name"] == volume


def test_demo_host_is_optional_and_buildable(compose: dict[str, Any]) -> None:
    demo = compose["services"]["demo-xrdp"]
    assert demo["profiles"] == ["demo"]
    context = ROOT / demo["build"]["context"]
    assert (context / demo["build"]["dockerfile"]).is_file()
    assert "demo-xrdp" not in compose["services"]["rdp-controller"]["depends_on"]
    assert "ports" not in demo, "clients reach the demo host through the controller's relay"
    assert "3389:3389" in compose["services"]["rdp-controller"]["ports"]
    for name, service in compose["services"].items():
        if name != "demo-xrdp":
            assert "profiles" not in service, f"{name} must start without a profile"


def test_demo_pool_names_the_demo_host(compose: dict[str, Any]) -> None:
    from rdp_controller.config import StaticServer

    values = env_values((ENV_DIR / ".env.rdp-controller.template").read_text(encoding="utf-8"))
    servers = [StaticServer.model_validate(item) for item in json.loads(values["RDP_CONTROLLER_SERVERS"])]
    demo = compose["services"]["demo-xrdp"]
    container_port = int(demo["expose"][0])
    assert [(s.address, s.port) for s in servers] == [("demo-xrdp", container_port)]


def test_schema_provenance_is_recorded() -> None:
    notes = (HERE / "SCHEMAS.md").read_text(encoding="utf-8")
    for name in ("compose-spec.json", "github-workflows.json"):
        assert name in notes
        assert (HERE / name).is_file()
    assert Path(HERE / "LICENSE.compose-spec").is_file() and Path(HERE / "LICENSE.schemastore").is_file()
