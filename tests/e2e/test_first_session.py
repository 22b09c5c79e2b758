"""End to end: docs/first-session.md as a newcomer does it, with processes only.

``make run``'s command (the dev stack with its embedded xrdp and the relay on a loopback port)
and ``make session``'s command run as processes; FreeRDP's ``xfreerdp`` opens the written
``session.rdp`` under Xvfb, through the relay, to the embedded xrdp, whose login screen is on
the screenshot. Ctrl-C (SIGINT to each process group, as a terminal sends it) ends the session
and then the stack, and no process is left behind.
"""

from __future__ import annotations

import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from common.xrdp import unusable_reason
from tests.support.app import TEST_SECRET
from tests.support.process import (
    REPO_ROOT,
    ServiceProcess,
    alive,
    descendants,
    free_port,
    port_open,
    process_identity,
    service_env,
)
from tests.support.rdp_client import IN_CI, Display, FreeRdp
from tests.support.xrdp_host import require_xrdp

pytestmark = [pytest.mark.e2e, pytest.mark.xrdp]

HEALTH_TIMEOUT = 60.0
STEP_TIMEOUT = 30.0
STOP_TIMEOUT = 30.0
RDP_HOST_RE = re.compile(r"devstack: RDP host xrdp 127\.0\.0\.1:(\d+) ")
BACKEND_RE = re.compile(r"devstack: (?:MongoDB-compatible server mongodb|Redis redis)://127\.0\.0\.1:(\d+)")
#: Where the last run's screenshot is copied, to look at after the run.
SCREENSHOT_COPY = REPO_ROOT / ".build" / "e2e" / "first-session.png"


def make_run_argv(port: int) -> list[str]:
    """``make run``'s command line (the Makefile passes the relay settings in the environment)."""
    return [
        *(sys.executable, "-m", "common.devstack", "--memory", "--service-port", str(port), "--"),
        *(sys.executable, "-m", "uvicorn", "rdp_controller.main:create_app", "--factory"),
        *("--host", "127.0.0.1", "--port", str(port)),
    ]


def make_session_argv(port: int, output: Path) -> list[str]:
    """``make session``'s command line, with this test's service and its own output file."""
    return [
        *(sys.executable, "-m", "common.devsession", "--url", f"http://127.0.0.1:{port}"),
        *("--output", str(output)),
    ]


def wait_for(
    condition: Callable[[], bool], what: str, *logs: ServiceProcess, timeout: float = STEP_TIMEOUT
) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} within {timeout:g} s\n" + "\n".join(p.log_tail(40) for p in logs))
        time.sleep(0.2)


def test_make_run_then_make_session_gives_a_login_screen_through_the_relay(tmp_path: Path) -> None:
    require_xrdp()  # skips locally, fails with CI=true
    reason = unusable_reason()
    if reason is not None:
        message = f"the embedded xrdp cannot run: {reason}"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    started_at = time.monotonic()
    port, relay_port = free_port(), free_port()
    run_env = service_env(
        JWT_SECRET_KEY=TEST_SECRET,
        RDP_CONTROLLER_RELAY_PORT=str(relay_port),
        RDP_CONTROLLER_RELAY_BIND="127.0.0.1",
        RDP_CONTROLLER_RELAY_PUBLIC_ADDRESS=f"127.0.0.1:{relay_port}",
    )
    rdp_file = tmp_path / "session.rdp"
    screenshot = tmp_path / "first-session.png"

    with (
        ServiceProcess(
            make_run_argv(port), env=run_env, port=port, log_path=tmp_path / "make-run.log"
        ) as run,
        Display("1920x1080x24") as display,
    ):
        run.wait_for_health(timeout=HEALTH_TIMEOUT, want="healthy")
        log = run.log_text()
        host = RDP_HOST_RE.search(log)
        assert host, run.log_tail()
        xrdp_port = int(host.group(1))
        assert f"devstack: RDP relay on 127.0.0.1:{relay_port}" in log, run.log_tail()
        stack = descendants(run.pid)
        commands = " | ".join(command for _pid, _start, command in stack)
        for name in ("xrdp", "secantus", "redis-server", "uvicorn"):
            assert name in commands, commands

        # make session: a session for the development user, its .rdp file, the command that opens it.
        session_env = service_env(JWT_SECRET_KEY=TEST_SECRET)
        with ServiceProcess(
            make_session_argv(port, rdp_file),
            env=session_env,
            port=port,
            log_path=tmp_path / "make-session.log",
        ) as session:
            session.wait_for_log("watching the session's status", timeout=STEP_TIMEOUT)
            out = session.log_text()
            assert "-> ready (slot_reserved)" in out, out
            assert f"connects to the relay at 127.0.0.1:{relay_port}" in out, out
            assert f"open it with: xfreerdp {rdp_file} /cert:ignore" in out, out
            text = rdp_file.read_text()
            assert f"full address:s:127.0.0.1:{relay_port}" in text and "loadbalanceinfo:s:" in text

            # The client opens the file: through the relay to the embedded xrdp.
            with FreeRdp(rdp_file, display, tmp_path / "xfreerdp.log") as client:
                session.wait_for_log("ready -> active (client_connected)", timeout=STEP_TIMEOUT)

                def login_screen_shown() -> bool:
                    display.screenshot(screenshot)
                    return display.colours(screenshot) > 16  # blank is 1; xrdp's login screen has hundreds

                wait_for(login_screen_shown, "xrdp's login screen did not appear", run, session)
                assert client.running, client.log()
                SCREENSHOT_COPY.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(screenshot, SCREENSHOT_COPY)
                # The client closes its window: the session is suspended, session.rdp gets a new token.
                assert client.process is not None
                client.process.send_signal(signal.SIGINT)
                try:
                    client.process.wait(timeout=STEP_TIMEOUT)
                except subprocess.TimeoutExpired:
                    client.kill()
            session.wait_for_log("active -> suspended (client_disconnected)", timeout=STEP_TIMEOUT)
            session.wait_for_log("again with a new one-time token", timeout=STEP_TIMEOUT)

            # Ctrl-C in make session's terminal: the session is terminated.
            session_tree = [process_identity(session.pid), *descendants(session.pid)]
            session.signal_group(signal.SIGINT)
            assert session.wait(timeout=STOP_TIMEOUT) == 0, session.log_tail()
            out = session.log_text()
            assert "suspended -> terminated (user_request)" in out, out
            assert re.search(r"session \S+ terminated \(user_request\)", out), out
            assert not [p for p in session_tree if p is not None and alive(p)]

        # Ctrl-C in make run's terminal: the service, xrdp, SecantusDB and Redis all stop.
        backend_ports = [int(p) for p in BACKEND_RE.findall(log)]
        run.signal_group(signal.SIGINT)
        code = run.wait(timeout=STOP_TIMEOUT)
        left = [identity for identity in stack if alive(identity)]
        assert not left, f"still running after Ctrl-C: {left}\n{run.log_tail()}"
        listening = [p for p in (port, relay_port, xrdp_port, *backend_ports) if port_open(p)]
        assert not listening, f"ports still open: {listening}\n{run.log_tail()}"
        assert "devstack: stopping the embedded servers" in run.log_text(), run.log_tail()
        assert code == 0, f"exit code {code}\n{run.log_tail()}"
    print(f"first session: {time.monotonic() - started_at:.1f} s; screenshot {screenshot}")
