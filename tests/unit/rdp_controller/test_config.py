"""Settings: environment over file over defaults, the production rules, clear errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rdp_controller.config import ConfigError, RdpControllerSettings, load_config

GOOD_SECRET = "s" * 40


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in RdpControllerSettings.model_fields:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv("RDP_CONTROLLER_CONFIG_FILE", raising=False)


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def dev_file(tmp_path: Path, extra: str = "") -> Path:
    return write(
        tmp_path / "config.yaml",
        "LUCID_ENV: development\nMONGODB_URL: mongodb://localhost:27017\nREDIS_URL: redis://localhost:6379/0\n"
        + extra,
    )


def test_environment_beats_file_beats_default(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = dev_file(tmp_path, "RDP_CONTROLLER_PORT: 9100\nSERVICE_RETRY_COUNT: 5\n")
    monkeypatch.setenv("RDP_CONTROLLER_PORT", "9200")
    settings = load_config(path).settings
    assert settings.RDP_CONTROLLER_PORT == 9200  # environment over file
    assert settings.SERVICE_RETRY_COUNT == 5  # file over default
    assert settings.SERVICE_TIMEOUT_SECONDS == 30.0  # default


def test_config_file_named_by_environment_variable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = dev_file(tmp_path, "RDP_CONTROLLER_MAX_SESSIONS_PER_USER: 7\n")
    monkeypatch.setenv("RDP_CONTROLLER_CONFIG_FILE", str(path))
    assert load_config().settings.RDP_CONTROLLER_MAX_SESSIONS_PER_USER == 7


def test_json_config_file(tmp_path: Path) -> None:
    data = {
        "LUCID_ENV": "development",
        "MONGODB_URL": "mongodb://db:1",
        "REDIS_URL": "redis://r:2",
        "LOG_LEVEL": "DEBUG",
    }
    path = write(tmp_path / "config.json", json.dumps(data))
    assert load_config(path).settings.LOG_LEVEL == "DEBUG"


def test_file_keys_are_case_insensitive_and_map_onto_settings(tmp_path: Path) -> None:
    path = dev_file(tmp_path, "rdp_controller_probe_interval: 12\n")
    assert load_config(path).settings.RDP_CONTROLLER_PROBE_INTERVAL == 12


@pytest.mark.parametrize(
    ("name", "text", "expected"),
    [
        ("bad.yaml", "LUCID_ENV: [unclosed\n", "is not valid YAML"),
        ("bad.json", "{not json", "is not valid JSON"),
        ("list.yaml", "- a\n- b\n", "must hold a mapping"),
        ("unknown.yaml", "LUCID_ENV: development\nNOT_A_SETTING: 1\n", "unknown settings: NOT_A_SETTING"),
        ("types.yaml", "RDP_CONTROLLER_PORT: many\n", "RDP_CONTROLLER_PORT"),
        ("range.yaml", "RDP_CONTROLLER_PORT: 70000\n", "RDP_CONTROLLER_PORT"),
        ("config.toml", "a = 1\n", "must end in .yaml, .yml or .json"),
    ],
)
def test_malformed_config_file_gives_a_clear_error(
    tmp_path: Path, name: str, text: str, expected: str
) -> None:
    path = write(tmp_path / name, text)
    with pytest.raises(ConfigError, match=expected) as caught:
        load_config(path)
    assert str(path) in str(caught.value) or "RDP_CONTROLLER_PORT" in str(caught.value)


def test_missing_named_config_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.yaml")


def test_bad_environment_value_names_the_variable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SERVICE_RETRY_COUNT", "lots")
    with pytest.raises(ConfigError, match="SERVICE_RETRY_COUNT"):
        load_config(dev_file(tmp_path))


def test_production_requires_database_urls(tmp_path: Path) -> None:
    path = write(tmp_path / "c.yaml", f"LUCID_ENV: production\nJWT_SECRET_KEY: {GOOD_SECRET}\n")
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert "MONGODB_URL is required" in str(caught.value)
    assert "REDIS_URL is required" in str(caught.value)


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("MONGODB_URL", "mongodb://localhost:27017/lucid"),
        ("REDIS_URL", "redis://127.0.0.1:6379/0"),
        ("SESSION_RECORDER_URL", "http://localhost:8093"),
        ("RDP_MONITOR_URL", "http://[::1]:8091"),
    ],
)
def test_production_refuses_localhost(monkeypatch: pytest.MonkeyPatch, variable: str, value: str) -> None:
    monkeypatch.setenv("MONGODB_URL", "mongodb://lucid-mongodb:27017")
    monkeypatch.setenv("REDIS_URL", "redis://lucid-redis:6379/0")
    monkeypatch.setenv("JWT_SECRET_KEY", GOOD_SECRET)
    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigError, match=f"{variable} must not use localhost") as caught:
        load_config()
    assert "service name" in str(caught.value)


def test_development_allows_localhost(tmp_path: Path) -> None:
    settings = load_config(dev_file(tmp_path, "SESSION_RECORDER_URL: http://127.0.0.1:9\n")).settings
    assert settings.MONGODB_URL == "mongodb://localhost:27017"


def test_production_refuses_weak_secret_and_disabled_auth(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MONGODB_URL", "mongodb://lucid-mongodb:27017")
    monkeypatch.setenv("REDIS_URL", "redis://lucid-redis:6379/0")
    monkeypatch.setenv("JWT_SECRET_KEY", "short")
    monkeypatch.setenv("RDP_CONTROLLER_AUTH_ENABLED", "false")
    with pytest.raises(ConfigError) as caught:
        load_config()
    assert "JWT_SECRET_KEY must be set to at least 32 characters" in str(caught.value)
    assert "RDP_CONTROLLER_AUTH_ENABLED=false is refused in production" in str(caught.value)


def test_production_with_service_names_loads(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MONGODB_URL", "mongodb://lucid:pw@lucid-mongodb:27017/lucid?authSource=admin")
    monkeypatch.setenv("REDIS_URL", "redis://:pw@lucid-redis:6379/0")
    monkeypatch.setenv("JWT_SECRET_KEY", GOOD_SECRET)
    monkeypatch.setenv("RDP_CONTROLLER_RELAY_PUBLIC_ADDRESS", "rdp.example.org:3389")
    settings = load_config().settings
    assert settings.is_production and settings.RDP_CONTROLLER_PORT == 8092
    assert settings.relay_enabled and settings.relay_public_address == ("rdp.example.org", 3389)


def test_production_relay_needs_its_public_address(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MONGODB_URL", "mongodb://lucid:pw@lucid-mongodb:27017/lucid?authSource=admin")
    monkeypatch.setenv("REDIS_URL", "redis://:pw@lucid-redis:6379/0")
    monkeypatch.setenv("JWT_SECRET_KEY", GOOD_SECRET)
    with pytest.raises(ConfigError, match="RDP_CONTROLLER_RELAY_PUBLIC_ADDRESS is required in production"):
        load_config()
    monkeypatch.setenv("RDP_CONTROLLER_RELAY_PORT", "0")  # direct mode needs none
    assert not load_config().settings.relay_enabled


@pytest.mark.parametrize("value", ["rdp.example.org", "host:0", "host:99999", "a b:3389"])
def test_relay_public_address_must_be_host_and_port(value: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RDP_CONTROLLER_RELAY_PUBLIC_ADDRESS", value)
    monkeypatch.setenv("LUCID_ENV", "development")
    monkeypatch.setenv("MONGODB_URL", "mongodb://127.0.0.1:27017")
    monkeypatch.setenv("REDIS_URL", "redis://127.0.0.1:6379/0")
    with pytest.raises(ConfigError, match="RDP_CONTROLLER_RELAY_PUBLIC_ADDRESS"):
        load_config()


def test_static_servers_from_environment_json(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RDP_CONTROLLER_SERVERS", '[{"name": "xrdp-1", "address": "10.0.0.5", "capacity": 4}]')
    servers = load_config(dev_file(tmp_path)).settings.RDP_CONTROLLER_SERVERS
    assert [(s.name, s.address, s.port, s.capacity) for s in servers] == [("xrdp-1", "10.0.0.5", 3389, 4)]


def test_shipped_config_yaml_is_valid() -> None:
    from rdp_controller.config import DEFAULT_CONFIG_FILE, read_config_file

    data = read_config_file(DEFAULT_CONFIG_FILE)
    RdpControllerSettings.model_validate(data)


def test_lease_ttl_must_outlast_a_crashed_reconciler(tmp_path: Path) -> None:
    path = dev_file(tmp_path, "RDP_CONTROLLER_RECONCILE_INTERVAL: 60\nRDP_CONTROLLER_LEASE_TTL: 200\n")
    with pytest.raises(ConfigError, match="RDP_CONTROLLER_LEASE_TTL"):
        load_config(path)
