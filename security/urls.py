"""The localhost rule: in production, services reach each other by service name, never loopback.

Patterns are compiled once at module level (template rule).
"""

from __future__ import annotations

import re

LOCALHOST_PATTERN = re.compile(r"\blocalhost\b", re.IGNORECASE)
IP_127_PATTERN = re.compile(r"\b127\.\d{1,3}\.\d{1,3}\.\d{1,3}\b")
IPV6_LOOPBACK_PATTERN = re.compile(r"\[::1\]")


def is_loopback_url(url: str) -> bool:
    """True when ``url`` names localhost, 127.0.0.0/8 or [::1]."""
    return bool(
        LOCALHOST_PATTERN.search(url) or IP_127_PATTERN.search(url) or IPV6_LOOPBACK_PATTERN.search(url)
    )


def loopback_error(variable: str, example_host: str) -> str:
    """The message given when ``variable`` names a loopback address in production."""
    return (
        f"{variable} must not use localhost in production (LUCID_ENV=production): "
        f"use the service name (e.g. {example_host}), or set LUCID_ENV=development for local runs"
    )
