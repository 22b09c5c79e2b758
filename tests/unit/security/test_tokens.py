"""python -m security.tokens: mint/decode round trip and the secret rules."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from security.jwt_auth import verify_token
from security.principals import Role
from security.tokens import EXIT_OK, EXIT_REJECTED, EXIT_USAGE, main

SECRET = "cli-test-secret-0123456789abcdefghijklmnopqrstuvwxyz"
REPO_ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("JWT_SECRET_KEY", "JWT_AUDIENCE", "JWT_LEEWAY_SECONDS"):
        monkeypatch.delenv(name, raising=False)


def run(*argv: str, stdin: str = "") -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main(list(argv), stdout=out, stderr=err, stdin=io.StringIO(stdin))
    return code, out.getvalue(), err.getvalue()


def test_mint_then_decode_round_trip(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JWT_SECRET_KEY", SECRET)
    code, out, err = run("mint", "--sub", "alice", "--roles", "user", "--roles", "operator", "--ttl", "120")
    assert code == EXIT_OK, err
    token = out.strip()
    assert token.count(".") == 2
    assert "'alice'" in err and "expires" in err
    principal = verify_token(token, secret=SECRET, audience="rdp-controller", leeway=0)
    assert principal.roles == frozenset({Role.USER, Role.OPERATOR})

    code, out, err = run("decode", token)
    assert code == EXIT_OK, err
    claims = json.loads(out)
    assert claims["sub"] == "alice"
    assert claims["roles"] == ["operator", "user"]
    assert claims["aud"] == "rdp-controller"
    assert claims["exp"] - claims["iat"] == 120


def test_decode_reads_the_token_from_stdin(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JWT_SECRET_KEY", SECRET)
    token = run("mint", "--sub", "svc", "--roles", "service")[1].strip()
    code, out, _ = run("decode", "-", stdin=token + "\n")
    assert code == EXIT_OK
    assert json.loads(out)["sub"] == "svc"


def test_audience_from_option_and_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JWT_SECRET_KEY", SECRET)
    token = run("mint", "--sub", "a", "--roles", "user", "--audience", "session-api")[1].strip()
    code, _, err = run("decode", token)
    assert code == EXIT_REJECTED
    assert "audience" in err
    monkeypatch.setenv("JWT_AUDIENCE", "session-api")
    assert run("decode", token)[0] == EXIT_OK


def test_decode_rejects_a_token_signed_with_another_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JWT_SECRET_KEY", SECRET)
    token = run("mint", "--sub", "a", "--roles", "user")[1].strip()
    monkeypatch.setenv("JWT_SECRET_KEY", SECRET[::-1])
    code, out, err = run("decode", token)
    assert code == EXIT_REJECTED
    assert out == ""
    assert "token rejected: token signature is invalid" in err
    assert token not in err


def test_secret_file(tmp_path: Path) -> None:
    secret_file = tmp_path / "jwt.secret"
    secret_file.write_text(SECRET + "\n", encoding="utf-8")
    code, out, err = run("mint", "--sub", "a", "--roles", "user", "--secret-file", str(secret_file))
    assert code == EXIT_OK, err
    verify_token(out.strip(), secret=SECRET, audience="rdp-controller", leeway=0)
    assert run("decode", out.strip(), "--secret-file", str(secret_file))[0] == EXIT_OK


def test_missing_secret_exits_2_with_a_clear_message() -> None:
    code, out, err = run("mint", "--sub", "a", "--roles", "user")
    assert code == EXIT_USAGE
    assert out == ""
    assert "no JWT secret" in err
    assert "JWT_SECRET_KEY" in err and "--secret-file" in err


def test_missing_secret_for_decode_exits_2() -> None:
    code, _, err = run("decode", "a.b.c")
    assert code == EXIT_USAGE
    assert "JWT_SECRET_KEY" in err


def test_short_secret_exits_2_with_a_clear_message(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JWT_SECRET_KEY", "x" * 31)
    code, out, err = run("mint", "--sub", "a", "--roles", "user")
    assert code == EXIT_USAGE
    assert out == ""
    assert "too short (31 characters)" in err
    assert "at least 32" in err
    assert "x" * 31 not in err


def test_short_secret_file_exits_2(tmp_path: Path) -> None:
    secret_file = tmp_path / "short"
    secret_file.write_text("tiny\n", encoding="utf-8")
    code, _, err = run("mint", "--sub", "a", "--roles", "user", "--secret-file", str(secret_file))
    assert code == EXIT_USAGE
    assert "too short" in err


def test_unreadable_secret_file_exits_2(tmp_path: Path) -> None:
    code, _, err = run("mint", "--sub", "a", "--roles", "user", "--secret-file", str(tmp_path / "absent"))
    assert code == EXIT_USAGE
    assert "cannot read --secret-file" in err


@pytest.mark.parametrize("option", ["--secret", "--sec", "--secret-key"])
def test_there_is_no_secret_option_and_the_value_is_not_echoed(
    option: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # "--secret" must not be accepted as an abbreviation of "--secret-file" either.
    monkeypatch.setenv("JWT_SECRET_KEY", SECRET)
    leaked = "command-line-secret-0123456789abcdefghijkl"
    code, out, err = run("mint", "--sub", "a", "--roles", "user", option, leaked)
    assert code == EXIT_USAGE
    assert leaked not in err
    code, out, err = run("mint", "--sub", "a", "--roles", "user", f"{option}={leaked}")
    assert code == EXIT_USAGE
    assert out == ""
    assert "there is no --secret option" in err
    assert leaked not in err + capsys.readouterr().err


@pytest.mark.parametrize(
    "argv",
    [
        ["mint", "--sub", "a"],
        ["mint", "--sub", "a", "--roles", "admin"],
        ["mint", "--sub", "a", "--roles", "user", "--ttl", "0"],
        ["mint", "--sub", "a", "--roles", "user", "--ttl", "soon"],
        ["decode"],
        [],
    ],
)
def test_bad_arguments_exit_2(
    argv: list[str], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("JWT_SECRET_KEY", SECRET)
    assert run(*argv)[0] == EXIT_USAGE
    assert "error:" in capsys.readouterr().err


def test_bad_leeway_in_environment_exits_2(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JWT_SECRET_KEY", SECRET)
    monkeypatch.setenv("JWT_LEEWAY_SECONDS", "-3")
    token = run("mint", "--sub", "a", "--roles", "user")[1].strip()
    code, _, err = run("decode", token)
    assert code == EXIT_USAGE
    assert "JWT_LEEWAY_SECONDS" in err


def test_module_entry_point_help_explains_the_secret_sources() -> None:
    env = {key: value for key, value in os.environ.items() if not key.startswith("JWT_")}
    result = subprocess.run(
        [sys.executable, "-m", "security.tokens", "mint", "--help"],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "JWT_SECRET_KEY" in result.stdout
    assert "--secret-file" in result.stdout
    assert "ps" in result.stdout and "shell history" in result.stdout


def test_module_entry_point_mints(monkeypatch: pytest.MonkeyPatch) -> None:
    env = {key: value for key, value in os.environ.items() if not key.startswith("JWT_")}
    env["JWT_SECRET_KEY"] = SECRET
    result = subprocess.run(
        [sys.executable, "-m", "security.tokens", "mint", "--sub", "bob", "--roles", "user", "--ttl", "30"],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert (
        verify_token(result.stdout.strip(), secret=SECRET, audience="rdp-controller", leeway=0).subject
        == "bob"
    )
    env.pop("JWT_SECRET_KEY")
    missing = subprocess.run(
        [sys.executable, "-m", "security.tokens", "mint", "--sub", "bob", "--roles", "user"],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert missing.returncode == 2
    assert "no JWT secret" in missing.stderr
