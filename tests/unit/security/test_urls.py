"""The localhost rule (security/urls.py): which URLs name a loopback address, and the message."""

from __future__ import annotations

import pytest

from security.urls import is_loopback_url, loopback_error


@pytest.mark.parametrize(
    "url",
    [
        "mongodb://localhost:27017/lucid",
        "redis://LocalHost:6379/0",
        "http://127.0.0.1:8093",
        "http://127.10.20.30",
        "http://[::1]:8092/health",
        "mongodb://user:pw@localhost/lucid?authSource=admin",
    ],
)
def test_loopback_urls_are_recognised(url: str) -> None:
    assert is_loopback_url(url)


@pytest.mark.parametrize(
    "url",
    [
        "mongodb://lucid-mongodb:27017/lucid",
        "redis://lucid-redis:6379/0",
        "http://10.0.0.127:8093",
        "http://[fe80::1]:8092",
        "http://mylocalhostname:8093",
        "",
    ],
)
def test_service_names_and_other_addresses_are_not(url: str) -> None:
    assert not is_loopback_url(url)


def test_the_message_names_the_variable_and_the_way_out() -> None:
    message = loopback_error("MONGODB_URL", "lucid-mongodb")
    assert message.startswith("MONGODB_URL must not use localhost in production (LUCID_ENV=production)")
    assert "lucid-mongodb" in message and "LUCID_ENV=development" in message
