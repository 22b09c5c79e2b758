"""make session's one-line errors (no service needed)."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from common import devsession
from common.xrdp import free_loopback_port


@pytest.fixture
def secret_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.delenv("JWT_SECRET_KEY", raising=False)
    path = tmp_path / "jwt-secret"
    path.write_text("s" * 48 + "\n")
    return path


def test_no_service_is_one_line_naming_make_run(
    secret_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"http://127.0.0.1:{free_loopback_port()}"
    assert devsession.main(["--url", url, "--secret-file", str(secret_file)]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == (
        f"devsession: the service is not running at {url}: start it with `make run` in another terminal\n"
    )


def test_no_secret_is_one_line_naming_make_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("JWT_SECRET_KEY", raising=False)
    assert devsession.main(["--secret-file", str(tmp_path / "missing")]) == 1
    (line,) = capsys.readouterr().err.splitlines()
    assert "JWT_SECRET_KEY is unset" in line and "make run" in line


def test_an_error_answer_is_its_status_code_and_message() -> None:
    body = {"error": {"code": "NO_CAPACITY", "message": "no available server has a free slot", "details": {}}}
    answer = httpx.Response(503, json=body)
    assert devsession.describe_error(answer) == "503 NO_CAPACITY: no available server has a free slot"
    refused = httpx.Response(401, json={"error": {"code": "UNAUTHORIZED", "message": "bad token"}})
    assert "another JWT secret" in devsession.describe_error(refused)
    assert devsession.describe_error(httpx.Response(502, text="bad gateway")) == "502 bad gateway"
