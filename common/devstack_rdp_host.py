"""The dev stack's RDP host: Debian's xrdp on a loopback port, registered as a static server.

Development only (``make run`` through :mod:`common.devstack`). A foreground xrdp
(:class:`common.xrdp.XrdpServer`), TLS with the snakeoil certificate, its config, log and pid file
in a scratch folder, added to the command's ``RDP_CONTROLLER_SERVERS`` as the static server
``devstack-xrdp``. Its port is kept in a state file while it stays free, so the pool MongoDB
remembers stays one host across runs. When xrdp is missing or unusable, one line says why and the
stack runs without a host.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import tempfile
from pathlib import Path

from common.devstack_processes import (
    START_TIMEOUT_SECONDS,
    STOP_TIMEOUT_SECONDS,
    die_with_parent,
    port_is_free,
)
from common.xrdp import INSTALL_HINT, XrdpError, XrdpServer, find_xrdp, free_loopback_port, unusable_reason

RDP_HOST_NAME = "devstack-xrdp"
RDP_HOST_CAPACITY = 10
ADD_HOST_HINT = "add a host with POST /api/v1/servers or RDP_CONTROLLER_SERVERS"


def rdp_host_port(state_file: Path | None) -> int:
    """The port kept in ``state_file`` while it is free, else a new free port (then kept there)."""
    if state_file is not None:
        with contextlib.suppress(OSError, ValueError):
            kept = int(state_file.read_text().strip())
            if 0 < kept < 65536 and port_is_free(kept):
                return kept
    port = free_loopback_port()
    if state_file is not None:
        with contextlib.suppress(OSError):
            state_file.parent.mkdir(parents=True, exist_ok=True)
            state_file.write_text(f"{port}\n")
    return port


class DevRdpHost:
    """The dev stack's xrdp: a scratch folder and an :class:`XrdpServer` that dies with its parent."""

    def __init__(self, binary: str, port_file: Path | None) -> None:
        self._workdir = tempfile.TemporaryDirectory(prefix="lucid-devstack-xrdp-")
        try:
            self.server = XrdpServer(
                binary,
                Path(self._workdir.name),
                security="negotiate",
                port=rdp_host_port(port_file),
                start_timeout=START_TIMEOUT_SECONDS,
                stop_timeout=STOP_TIMEOUT_SECONDS,
                preexec_fn=die_with_parent,
            )
        except BaseException:
            self._workdir.cleanup()
            raise

    @property
    def static_server(self) -> dict[str, object]:
        """The entry of ``RDP_CONTROLLER_SERVERS`` that registers this host."""
        return {
            "name": RDP_HOST_NAME,
            "address": "127.0.0.1",
            "port": self.server.port,
            "capacity": RDP_HOST_CAPACITY,
            "labels": {"origin": "devstack"},
        }

    def stop(self) -> None:
        self.server.stop()
        self._workdir.cleanup()


def spawn_rdp_host(port_file: Path | None) -> DevRdpHost | None:
    """Spawn xrdp when it is installed and usable, else print why not (one line) and return None."""
    binary = find_xrdp()
    if binary is None:
        print(f"devstack: no RDP host: xrdp is not installed ({INSTALL_HINT}); {ADD_HOST_HINT}")
        return None
    reason = unusable_reason()
    if reason is not None:
        print(f"devstack: no RDP host: {reason}; run as root, or {ADD_HOST_HINT}")
        return None
    try:
        host = DevRdpHost(binary, port_file)
        host.server.spawn()
    except (XrdpError, OSError, subprocess.SubprocessError) as exc:
        print(f"devstack: no RDP host: xrdp did not start: {str(exc).splitlines()[0]}; {ADD_HOST_HINT}")
        return None
    return host


def with_static_server(env: dict[str, str], server: dict[str, object]) -> str | None:
    """``RDP_CONTROLLER_SERVERS`` of ``env`` with ``server`` appended; None when it is not a JSON list."""
    try:
        listed = json.loads(env.get("RDP_CONTROLLER_SERVERS", "").strip() or "[]")
    except ValueError:
        return None
    if not isinstance(listed, list):
        return None
    kept = [s for s in listed if not (isinstance(s, dict) and s.get("name") == server["name"])]
    return json.dumps([*kept, server])


def await_rdp_host(host: DevRdpHost, env: dict[str, str]) -> DevRdpHost | None:
    """Wait for the spawned xrdp and register it in ``env``; None (and one line) when it failed."""
    server = host.server
    try:
        server.wait_until_listening()
    except XrdpError as exc:
        print(f"devstack: no RDP host: {str(exc).splitlines()[0]}; {ADD_HOST_HINT}")
        host.stop()
        return None
    merged = with_static_server(env, host.static_server)
    if merged is None:
        print(
            "devstack: RDP_CONTROLLER_SERVERS from the environment is not a JSON list: "
            f"the embedded xrdp on 127.0.0.1:{server.port} is not added to it"
        )
    else:
        env["RDP_CONTROLLER_SERVERS"] = merged
    print(
        f"devstack: RDP host xrdp 127.0.0.1:{server.port} (TLS, snakeoil certificate), "
        f"static server {RDP_HOST_NAME!r} (RDP_CONTROLLER_SERVERS)"
    )
    return host
