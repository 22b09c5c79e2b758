"""uvicorn's access lines of successful probes and scrapes are dropped; every other line stays."""

from __future__ import annotations

import logging

import pytest

from rdp_controller.main import QuietProbes


def access_record(method: str, path: str, status: int) -> logging.LogRecord:
    args = ("127.0.0.1:5000", method, path, "1.1", status)
    return logging.LogRecord(
        "uvicorn.access", logging.INFO, __file__, 1, '%s - "%s %s HTTP/%s" %d', args, None
    )


@pytest.mark.parametrize(
    ("method", "path", "status", "kept"),
    [
        ("GET", "/health", 200, False),
        ("GET", "/metrics", 200, False),
        ("GET", "/health", 503, True),  # a failed probe is worth a line
        ("POST", "/health", 405, True),
        ("GET", "/health?verbose=1", 200, True),
        ("GET", "/api/v1/sessions", 200, True),
        ("DELETE", "/api/v1/sessions/x", 200, True),
    ],
)
def test_only_successful_probes_and_scrapes_are_quiet(
    method: str, path: str, status: int, kept: bool
) -> None:
    assert QuietProbes().filter(access_record(method, path, status)) is kept


def test_other_records_pass() -> None:
    record = logging.LogRecord("uvicorn.access", logging.INFO, __file__, 1, "plain message", None, None)
    assert QuietProbes().filter(record) is True
