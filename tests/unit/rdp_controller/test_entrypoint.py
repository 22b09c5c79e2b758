"""The container entrypoint: a bad port or configuration exits 1 with a message naming the setting."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ENTRYPOINT = Path(__file__).resolve().parents[3] / "rdp-controller" / "entrypoint.py"


def run(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    base = {
        k: v for k, v in os.environ.items() if not k.startswith(("RDP_CONTROLLER", "MONGODB", "REDIS", "JWT"))
    }
    return subprocess.run(
        [sys.executable, str(ENTRYPOINT)], env={**base, **env}, capture_output=True, text=True, timeout=60
    )


@pytest.mark.parametrize("port", ["http", "0", "70000", "-1", ""])
def test_bad_port_exits_1_with_a_clear_message(port: str) -> None:
    result = run({"RDP_CONTROLLER_PORT": port})
    assert result.returncode == 1
    assert "Invalid RDP_CONTROLLER_PORT value" in result.stderr


def test_refused_configuration_exits_1_naming_each_problem() -> None:
    result = run(
        {"RDP_CONTROLLER_PORT": "8092", "LUCID_ENV": "production", "MONGODB_URL": "mongodb://localhost:1"}
    )
    assert result.returncode == 1
    assert "MONGODB_URL must not use localhost" in result.stderr
    assert "REDIS_URL is required" in result.stderr
    assert "Traceback" not in result.stderr
