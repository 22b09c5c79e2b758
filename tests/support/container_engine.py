"""The container engine of the container tier (tests/containers/): Docker when its daemon answers,
else podman (as root, with the settings in ``tests/containers/containers.conf`` unless
``CONTAINERS_CONF`` names another file); its CLI run with one result type, and each step's time.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
CONTAINERS_CONF = ROOT / "tests" / "containers" / "containers.conf"
HOST_CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"

Say = Callable[[str], None]


def _stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


@dataclass
class Timings:
    """Each step's wall time, printed as it ends and summed up at the end of the run."""

    say: Say = _stderr
    steps: list[tuple[str, float]] = field(default_factory=list)

    @contextmanager
    def step(self, name: str) -> Iterator[None]:
        self.say(f"[containers] {name} ...")
        started = time.monotonic()
        outcome = "failed"
        try:
            yield
            outcome = "done"
        finally:
            seconds = time.monotonic() - started
            self.steps.append((f"{name} ({outcome})" if outcome != "done" else name, seconds))
            self.say(f"[containers] {name}: {outcome} in {seconds:.1f} s")


class EngineError(RuntimeError):
    pass


@dataclass
class Engine:
    cli: str
    env: dict[str, str]

    @property
    def is_podman(self) -> bool:
        return self.cli == "podman"

    def run(
        self, *args: str, check: bool = True, timeout: float = 600, input_bytes: bytes | None = None
    ) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [self.cli, *args],
            env=self.env,
            capture_output=True,
            text=input_bytes is None,
            input=input_bytes,
            timeout=timeout,
            check=False,
        )
        if input_bytes is not None:  # keep one result type for the callers
            result = subprocess.CompletedProcess(
                result.args,
                result.returncode,
                result.stdout.decode(errors="replace"),
                result.stderr.decode(errors="replace"),
            )
        if check and result.returncode != 0:
            raise EngineError(
                f"{self.cli} {' '.join(args[:6])}... exited {result.returncode}:\n"
                f"{result.stdout[-4000:]}\n{result.stderr[-4000:]}"
            )
        return result

    def exists(self, image: str) -> bool:
        return self.run("image", "inspect", image, check=False, timeout=60).returncode == 0

    def inspect(self, kind: str, name: str) -> dict[str, Any]:
        data = json.loads(self.run(kind, "inspect", name, timeout=60).stdout)
        return dict(data[0])

    def build_volume_args(self) -> list[str]:
        # podman's RUN steps reach PyPI only with the host's CA bundle (not baked into any layer).
        if self.is_podman and Path(HOST_CA_BUNDLE).exists():
            return ["--volume", f"{HOST_CA_BUNDLE}:{HOST_CA_BUNDLE}:ro"]
        return []


def engine_env() -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("CONTAINERS_CONF", str(CONTAINERS_CONF))
    return env


def find_engine() -> tuple[Engine | None, str]:
    """The engine to use, or None and why there is none."""
    reasons = []
    env = engine_env()
    for cli in ("docker", "podman"):
        if shutil.which(cli) is None:
            reasons.append(f"no {cli} on PATH")
            continue
        try:
            result = subprocess.run(
                [cli, "info"], env=env, capture_output=True, text=True, timeout=60, check=False
            )
        except subprocess.TimeoutExpired:
            reasons.append(f"`{cli} info` did not answer within 60 s")
            continue
        if result.returncode == 0:
            return Engine(cli, env), f"{cli} answers"
        last = (result.stderr.strip().splitlines() or ["no output"])[-1]
        reasons.append(f"`{cli} info` failed: {last}")
    return None, "no container engine answers (" + "; ".join(reasons) + ")"
