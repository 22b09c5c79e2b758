"""The dev stack's child processes: start one with its log, wait until it listens, stop them.

Development and tests only (``make run``, :class:`common.devstack.EmbeddedStack`, the fault tier's
harness), like :mod:`common.devstack`. Every child gets the parent-death signal: a killed parent (a
test run stopped by a timeout, a killed ``make run``) leaves no process behind.
"""

from __future__ import annotations

import ctypes
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

START_TIMEOUT_SECONDS = 60.0
STOP_TIMEOUT_SECONDS = 10.0
PR_SET_PDEATHSIG = 1  # linux/prctl.h
# Looked up here, in the parent: the child (forked from a parent that may run threads) only calls it.
_PRCTL = ctypes.CDLL(None, use_errno=True).prctl if sys.platform == "linux" else None


class DevStackError(RuntimeError):
    """The embedded stack could not start; the message says what is missing or what the log said."""


def port_is_free(port: int) -> bool:
    """Whether ``port`` on 127.0.0.1 can be bound right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def die_with_parent() -> None:
    """In the child before exec: ask Linux for SIGTERM when the parent dies (no-op elsewhere)."""
    if _PRCTL is not None:
        _PRCTL(PR_SET_PDEATHSIG, signal.SIGTERM)


def start_process(argv: Sequence[str], log: Path, *, cwd: Path) -> subprocess.Popen[bytes]:
    """Start a server: its output appended to ``log``, in its own session, dying with its parent."""
    # Own session: Ctrl-C reaches the service first, which still needs the servers to shut down.
    with log.open("ab") as out:
        return subprocess.Popen(
            list(argv),
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=cwd,
            start_new_session=True,
            preexec_fn=die_with_parent,
        )


def wait_for_port(port: int, process: subprocess.Popen[bytes], name: str, log: Path, deadline: float) -> None:
    """Return once ``process`` listens on 127.0.0.1:``port``; DevStackError on its exit or at ``deadline``."""
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise DevStackError(f"{name} exited with code {process.returncode}: {log_tail(log)}")
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.settimeout(0.5)
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise DevStackError(f"{name} did not listen on 127.0.0.1:{port} within {START_TIMEOUT_SECONDS:.0f}s")


def log_tail(log: Path, lines: int = 15) -> str:
    """The last ``lines`` lines of a server's log, for an error message."""
    try:
        return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def stop_processes(processes: Sequence[subprocess.Popen[bytes]]) -> None:
    """SIGTERM to each one still running, then wait for each in turn (SIGKILL after the stop timeout)."""
    for process in processes:
        if process.poll() is None:
            process.terminate()
    for process in processes:
        try:
            process.wait(timeout=STOP_TIMEOUT_SECONDS)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def run_child(command: Sequence[str], env: dict[str, str]) -> int:
    """Run ``command`` to its end, forwarding Ctrl-C and SIGTERM to it once; its exit code."""
    # Own process group: Ctrl-C reaches it once (forwarded below). Parent-death signal: a killed
    # devstack leaves no service behind, as it leaves no server.
    child = subprocess.Popen(list(command), env=env, process_group=0, preexec_fn=die_with_parent)

    def forward(signum: int, _frame: object) -> None:
        if child.poll() is None:
            child.send_signal(signum)

    previous = {sig: signal.signal(sig, forward) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        return child.wait()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
