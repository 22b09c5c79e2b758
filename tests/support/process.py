"""Run the service (or ``python -m common.devstack``) as a real child process, for e2e tests and benchmarks.

    env = service_env(RDP_CONTROLLER_PORT=str(port), MONGODB_URL=..., REDIS_URL=...)
    with ServiceProcess(entrypoint_argv(), env=env, port=port, log_path=tmp_path / "service.log") as service:
        service.wait_for_health()
        ...  # httpx against service.base_url
        service.send_signal(signal.SIGTERM)
        code = service.wait(timeout=20)

The child runs in a new session (its own process group), so a Ctrl-C of the test run does not
reach it twice; ``stop()`` (also on ``__exit__``, also when the test failed) sends SIGTERM to
the whole group, then SIGKILL after a bound. Its stdout and stderr go to one log file, never to
a pipe (a full pipe would block it).
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Final

import httpx

from common.xrdp import free_loopback_port as free_port

__all__ = [
    "REPO_ROOT",
    "ServiceProcess",
    "ServiceProcessError",
    "alive",
    "cpu_seconds",
    "descendants",
    "entrypoint_argv",
    "free_port",
    "group_members",
    "port_open",
    "process_identity",
    "service_env",
    "started",
    "tracebacks",
]

REPO_ROOT: Final = Path(__file__).resolve().parents[2]
ENTRYPOINT: Final = REPO_ROOT / "rdp-controller" / "entrypoint.py"
CLK_TCK: Final = os.sysconf("SC_CLK_TCK")

# Variables of the outer environment that would change what the service under test does.
SCRUBBED_PREFIXES: Final = (
    "RDP_CONTROLLER_",
    "MONGODB_",
    "REDIS_",
    "LUCID_",
    "JWT_",
    "RDP_SERVER_MANAGER_",
    "RDP_XRDP_",
    "RDP_MONITOR_",
    "SESSION_RECORDER_",
    "SESSION_PROCESSOR_",
    "SERVICE_",
    "LOG_LEVEL",
    "BACKEND_TIMEOUT",
)
TRACEBACK_RE: Final = re.compile(r"^Traceback \(most recent call last\):", re.MULTILINE)


class ServiceProcessError(AssertionError):
    """The process did not come up (or misbehaved); the message carries the tail of its log."""


def service_env(**values: str | None) -> dict[str, str]:
    """This interpreter's environment without the service's settings, plus ``values`` (None unsets)."""
    env = {key: value for key, value in os.environ.items() if not key.upper().startswith(SCRUBBED_PREFIXES)}
    env["PYTHONUNBUFFERED"] = "1"
    env["RDP_CONTROLLER_VALIDATE_RESPONSES"] = "true"  # the suite checks every body (a benchmark: "false")
    for key, value in values.items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = value
    return env


def entrypoint_argv() -> list[str]:
    """The container's CMD, with this interpreter (the virtualenv's)."""
    return [sys.executable, str(ENTRYPOINT)]


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


def tracebacks(log: str) -> list[str]:
    """Each Python traceback in ``log`` with the 25 lines that follow its header."""
    lines = log.splitlines()
    found = []
    for number, line in enumerate(lines):
        if TRACEBACK_RE.match(line.removeprefix("ERROR:    ")):
            found.append("\n".join(lines[max(0, number - 2) : number + 25]))
    return found


def process_identity(pid: int) -> tuple[int, int, str] | None:
    """(pid, start time in clock ticks, command line) of a live process; None if it is gone or a zombie.

    The start time tells a process from a later one that reused its pid.
    """
    fields = _stat_fields(Path(f"/proc/{pid}"))
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return None
    if fields is None or fields[0] in ("Z", "X"):  # zombie or dead: no longer running
        return None
    return pid, int(fields[19]), cmdline.replace(b"\0", b" ").decode(errors="replace").strip()


def alive(identity: tuple[int, int, str]) -> bool:
    """The process that ``identity`` names still runs (same pid and start time)."""
    now = process_identity(identity[0])
    return now is not None and now[1] == identity[1]


def _stat_fields(entry: Path) -> list[str] | None:
    """The fields of ``/proc/PID/stat`` after the command name (state, ppid, pgrp, ...)."""
    try:
        stat = (entry / "stat").read_text()
    except OSError:
        return None
    return stat[stat.rindex(")") + 2 :].split()


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds ``pid`` has used so far, from /proc (None once it is gone)."""
    fields = _stat_fields(Path(f"/proc/{pid}"))
    return None if fields is None else (int(fields[11]) + int(fields[12])) / CLK_TCK


def group_members(pgid: int) -> list[int]:
    """Pids of the live processes in process group ``pgid``."""
    members = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            fields = _stat_fields(entry)
            if fields is not None and fields[0] not in ("Z", "X") and int(fields[2]) == pgid:
                members.append(int(entry.name))
    return members


def descendants(pid: int) -> list[tuple[int, int, str]]:
    """Every live descendant of ``pid`` (children, grandchildren ...), from /proc."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        fields = _stat_fields(entry)
        if fields is not None:
            children.setdefault(int(fields[1]), []).append(int(entry.name))
    found: list[tuple[int, int, str]] = []
    pending = list(children.get(pid, []))
    while pending:
        child = pending.pop()
        identity = process_identity(child)
        if identity is not None:
            found.append(identity)
        pending.extend(children.get(child, []))
    return found


class ServiceProcess:
    """One child process serving HTTP on ``127.0.0.1:port``; a context manager that always stops it."""

    def __init__(
        self,
        argv: Sequence[str],
        *,
        env: Mapping[str, str],
        port: int,
        log_path: Path,
        cwd: Path = REPO_ROOT,
        stop_timeout: float = 20.0,
    ) -> None:
        self.argv = list(argv)
        self.env = dict(env)
        self.port = port
        self.log_path = log_path
        self.cwd = cwd
        self.stop_timeout = stop_timeout
        self.process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        if self.process is None:
            raise ServiceProcessError("the process was not started")
        return self.process.pid

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    @property
    def returncode(self) -> int | None:
        return None if self.process is None else self.process.poll()

    def start(self) -> ServiceProcess:
        if self.process is not None:
            raise ServiceProcessError("started already")
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = self.log_path.open("ab")
        try:
            self.process = subprocess.Popen(
                self.argv,
                env=self.env,
                cwd=self.cwd,
                stdin=subprocess.DEVNULL,
                stdout=self._log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        except BaseException:
            self._close_log()
            raise
        return self

    # Logs ---------------------------------------------------------------------------------
    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def log_tail(self, lines: int = 60) -> str:
        tail = self.log_text().splitlines()[-lines:]
        return f"--- last {len(tail)} lines of {self.log_path} ---\n" + "\n".join(tail)

    def fail(self, message: str) -> ServiceProcessError:
        state = "running" if self.running else f"exited with {self.returncode}"
        return ServiceProcessError(f"{message} (process {state})\n{self.log_tail()}")

    # Waiting ------------------------------------------------------------------------------
    def wait_for_health(self, *, timeout: float = 60.0, want: str | None = None) -> dict[str, Any]:
        """Poll ``GET /health`` until it answers 200 (and ``status == want`` when given); its body.

        Fails early when the process exits, and after ``timeout`` with the last answer and the log.
        """
        deadline = time.monotonic() + timeout
        last = "no answer yet"
        with httpx.Client(base_url=self.base_url, timeout=2.0) as client:
            while True:
                if not self.running:
                    raise self.fail("the service exited before /health answered")
                try:
                    response = client.get("/health")
                except httpx.TransportError as exc:
                    last = f"{type(exc).__name__}: {exc}"
                else:
                    last = f"{response.status_code} {response.text[:500]}"
                    if response.status_code == 200:
                        body: dict[str, Any] = response.json()
                        if want is None or body.get("status") == want:
                            return body
                if time.monotonic() > deadline:
                    raise self.fail(f"/health did not answer 200 within {timeout:g} s; last: {last}")
                time.sleep(0.2)

    def wait_for_log(self, text: str, *, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while text not in self.log_text():
            if time.monotonic() > deadline:
                raise self.fail(f"{text!r} did not appear in the log within {timeout:g} s")
            time.sleep(0.1)

    # Stopping -----------------------------------------------------------------------------
    def send_signal(self, sig: int) -> None:
        """Signal the process itself (as ``docker stop`` signals the container's main process)."""
        if self.running:
            self.pid_signal(sig)

    def pid_signal(self, sig: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, sig)

    def signal_group(self, sig: int) -> None:
        """Signal its whole process group (as Ctrl-C signals the foreground group)."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.pid, sig)

    def wait(self, timeout: float) -> int:
        """The exit code (negative: killed by that signal); fails with the log after ``timeout``."""
        if self.process is None:
            raise ServiceProcessError("the process was not started")
        try:
            return self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise self.fail(f"the process did not exit within {timeout:g} s") from None

    def stop(self) -> int | None:
        """SIGTERM to the group, SIGKILL after ``stop_timeout``; idempotent. The exit code."""
        process = self.process
        if process is None:
            return None
        try:
            if process.poll() is None:
                self.signal_group(signal.SIGTERM)
                try:
                    process.wait(timeout=self.stop_timeout)
                except subprocess.TimeoutExpired:
                    self.signal_group(signal.SIGKILL)
                    process.wait(timeout=self.stop_timeout)
            # Whatever the leader left in its group (it exited first) goes too. Only while the group
            # has members: an empty group's id is free and may name someone else's group later.
            if group_members(process.pid):
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(process.pid, signal.SIGKILL)
        finally:
            self._close_log()
        return process.returncode

    def _close_log(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None

    def __enter__(self) -> ServiceProcess:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


@contextlib.contextmanager
def started(service: ServiceProcess, *, health_timeout: float = 60.0) -> Iterator[ServiceProcess]:
    """Start, wait for ``/health`` to answer 200, yield; stop on the way out (also on failure)."""
    with service:
        service.wait_for_health(timeout=health_timeout)
        yield service
