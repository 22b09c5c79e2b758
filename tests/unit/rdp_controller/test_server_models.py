"""Validation of server registration and updates: addresses, ports, capacity, pins."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from rdp_controller.server_models import ServerCreate, ServerUpdate, check_address


@pytest.mark.parametrize(
    ("given", "normalised"),
    [
        ("127.0.0.1", "127.0.0.1"),
        ("10.1.2.3", "10.1.2.3"),
        ("::1", "::1"),
        ("0:0:0:0:0:0:0:1", "::1"),
        ("FE80::1", "fe80::1"),
        ("rdp-01.Example.COM", "rdp-01.example.com"),
        ("localhost", "localhost"),
        ("host1", "host1"),
        ("1host.example", "1host.example"),
        ("a" * 63 + ".example", "a" * 63 + ".example"),
    ],
)
def test_valid_addresses_are_normalised(given: str, normalised: str) -> None:
    assert check_address(given) == normalised


@pytest.mark.parametrize(
    "bad",
    [
        "",
        " host",
        "host ",
        "host_name",
        "-host",
        "host-",
        "ho st",
        "host..example",
        "host.example.",
        "a" * 64 + ".example",
        "x." * 127 + "xx",  # 256 characters
        "999.1.1.1",
        "10.0.0.01",
        "1.2.3",
        "256.256.256.256",
        "[::1]",
        "http://host",
        "host:3389",
        "0.0.0.0",
        "::",
        "224.0.0.1",
        "ff02::1",
        "255.255.255.255",
    ],
)
def test_invalid_addresses_are_refused(bad: str) -> None:
    with pytest.raises(ValueError):
        check_address(bad)


def errors(model: type[ServerCreate] | type[ServerUpdate], **values: Any) -> set[str]:
    with pytest.raises(ValidationError) as caught:
        model.model_validate(values)
    return {".".join(str(part) for part in error["loc"]) for error in caught.value.errors()}


def test_registration_defaults() -> None:
    server = ServerCreate.model_validate({"name": "rdp-1", "address": "10.0.0.5"})
    assert (server.port, server.capacity, server.weight, server.labels) == (3389, 10, 1.0, {})


@pytest.mark.parametrize(
    ("values", "field"),
    [
        ({"address": "999.1.1.1"}, "address"),
        ({"address": "0.0.0.0"}, "address"),
        ({"port": 0}, "port"),
        ({"port": 65536}, "port"),
        ({"port": "rdp"}, "port"),
        ({"capacity": 0}, "capacity"),
        ({"capacity": 10_001}, "capacity"),
        ({"weight": 0}, "weight"),
        ({"weight": -1}, "weight"),
        ({"name": "has space"}, "name"),
        ({"name": ""}, "name"),
        ({"labels": {"bad key!": "x"}}, "labels"),
        ({"pinned_cert_sha256": "AB" * 32}, "pinned_cert_sha256"),
        ({"pinned_cert_sha256": "ab" * 31}, "pinned_cert_sha256"),
        ({"state": "available"}, "state"),
    ],
)
def test_bad_registrations_name_the_field(values: dict[str, Any], field: str) -> None:
    base = {"name": "rdp-1", "address": "10.0.0.5"}
    assert field in errors(ServerCreate, **{**base, **values})


@pytest.mark.parametrize(
    ("values", "field"),
    [
        ({"capacity": 0}, "capacity"),
        ({"weight": 0}, "weight"),
        ({"drain_deadline_seconds": -1, "draining": True}, "drain_deadline_seconds"),
        ({"pinned_cert_sha256": "xyz"}, "pinned_cert_sha256"),
        ({"address": "10.0.0.6"}, "address"),
    ],
)
def test_bad_updates_name_the_field(values: dict[str, Any], field: str) -> None:
    assert field in errors(ServerUpdate, **values)


def test_an_empty_pin_unpins() -> None:
    assert ServerUpdate.model_validate({"pinned_cert_sha256": ""}).pinned_cert_sha256 == ""
