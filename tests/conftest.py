"""Fixtures shared by every tier. Servers start lazily, once per test session, only for tests that ask."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from tests.support.backends import Backends, BackendsUnavailable, start_backends

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def unavailable(reason: str) -> None:
    """Skip locally; in CI a missing backend or tool fails the run instead of skipping."""
    if IN_CI:
        pytest.fail(f"{reason} (CI=true: a missing backend fails the run)")
    pytest.skip(reason)


def announce(config: pytest.Config, line: str) -> None:
    """Write a line to the terminal even while pytest captures output (fixtures run captured)."""
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    capture = config.pluginmanager.get_plugin("capturemanager")
    if reporter is None:
        return
    if capture is not None:
        with capture.global_and_fixture_disabled():
            reporter.write_line(f"\n{line}")
    else:
        reporter.write_line(f"\n{line}")


@pytest.fixture(scope="session")
def backends(request: pytest.FixtureRequest) -> Iterator[Backends]:
    try:
        started = start_backends()
    except BackendsUnavailable as exc:
        unavailable(str(exc))
        raise  # unreachable: unavailable() raises
    announce(request.config, f"integration backends: {started.describe()}")
    try:
        yield started
    finally:
        started.stop()


@pytest.fixture(scope="session")
def mongo_url(backends: Backends) -> str:
    return backends.mongodb_url


@pytest.fixture(scope="session")
def redis_url(backends: Backends) -> str:
    return backends.redis_url
