"""Run Debian's xrdp (0.9.x) in the foreground on a private loopback port: the dev stack's RDP host.

    server = XrdpServer(binary, workdir, security="negotiate")
    server.start()           # writes workdir/xrdp.ini, runs xrdp, waits until it accepts connections
    ...                      # server.port, server.certificate_sha256, server.log_tail()
    server.stop()

``python -m common.devstack`` runs one for ``make run``; ``tests/support/xrdp_host.py`` wraps
the same class for tests. Each instance writes its own ``xrdp.ini`` (a copy of
``/etc/xrdp/xrdp.ini`` with the listen address, security layer, certificate and log file
changed) and its own pid file (``xrdp.pid``, the child's pid) into ``workdir``, and runs
``xrdp --nodaemon --config FILE --port tcp://127.0.0.1:PORT``.

What xrdp 0.9.21 does that this works around:

- The daemon's pid file path is compiled in (``/var/run/xrdp/xrdp.pid``). Every start, daemon
  or not, refuses to run while that file exists ("It looks like xrdp is already running"), but
  only the daemon writes it. So foreground instances never block each other (several can run at
  once), and a stale file left by a crashed daemon is removed here. A file naming a live xrdp
  process (the system service) is left alone and reported as an error.
- ``--port 3390`` alone listens on every interface; ``tcp://127.0.0.1:PORT`` keeps it on
  loopback. The listen backlog is 2.
- ``fork=false`` keeps every connection in the one process (threads), so stopping the process
  stops everything. SIGTERM takes about a second; SIGKILL follows after a timeout.
- The certificate is the Debian snakeoil pair that ``/etc/xrdp/cert.pem`` and ``key.pem`` link
  to by default; it is generated with ``make-ssl-cert`` when missing (needs root).
- It needs root here: as another user it starts and listens, but cannot read the snakeoil key
  (so it falls back to standard RDP security) nor ``/etc/xrdp/rsakeys.ini`` (so every connection
  then fails). :func:`unusable_reason` says so before anything is started.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, Final, Literal

XRDP_BINARIES: Final = ("/usr/sbin/xrdp", "/usr/local/sbin/xrdp")
SYSTEM_INI: Final = Path("/etc/xrdp/xrdp.ini")
RSA_KEYS: Final = Path("/etc/xrdp/rsakeys.ini")
PID_FILE: Final = Path("/var/run/xrdp/xrdp.pid")
SNAKEOIL_CERT: Final = Path("/etc/ssl/certs/ssl-cert-snakeoil.pem")
SNAKEOIL_KEY: Final = Path("/etc/ssl/private/ssl-cert-snakeoil.key")
INSTALL_HINT: Final = "apt-get install xrdp"

Security = Literal["negotiate", "tls-only", "tls", "rdp"]
#: ``security_layer`` of xrdp.ini for each mode ("tls" is an alias of "tls-only").
SECURITY_LAYER: Final = {"negotiate": "negotiate", "tls-only": "tls", "tls": "tls", "rdp": "rdp"}
_SECTION_RE: Final = re.compile(r"^\s*\[([^\]]+)\]\s*$")
_KEY_RE: Final = re.compile(r"^\s*([A-Za-z0-9_.]+)\s*=")
_PEM_CERT_RE: Final = re.compile(r"-----BEGIN CERTIFICATE-----\s.*?-----END CERTIFICATE-----", re.DOTALL)


class XrdpError(RuntimeError):
    """xrdp could not be started (the message carries the tail of its log)."""


def find_xrdp() -> str | None:
    """The xrdp binary (PATH, then the Debian locations), or None."""
    found = shutil.which("xrdp")
    if found:
        return found
    return next((path for path in XRDP_BINARIES if os.access(path, os.X_OK)), None)


def unusable_reason() -> str | None:
    """Why this user cannot run a working xrdp here (None: it can).

    Root can; another user only when it may read the TLS key and xrdp's RSA keys (a missing key
    counts as unreadable: only root can generate it). ``os.access``, not ``exists()``: another
    user may not even look into ``/etc/ssl/private``.
    """
    if os.geteuid() == 0:
        return None
    unreadable = [str(path) for path in (SNAKEOIL_KEY, RSA_KEYS) if not os.access(path, os.R_OK)]
    if unreadable:
        return f"xrdp needs root here (this user cannot read {' and '.join(unreadable)})"
    return None


def set_ini_values(text: str, section: str, values: dict[str, str]) -> str:
    """Set ``key=value`` lines of one ``[section]`` of an xrdp ini (replace, or append at its end)."""
    lines = text.splitlines()
    pending = dict(values)
    out: list[str] = []
    current: str | None = None

    def flush() -> None:
        if current == section:
            out.extend(f"{key}={value}" for key, value in pending.items())
            pending.clear()

    for line in lines:
        header = _SECTION_RE.match(line)
        if header:
            flush()
            current = header.group(1)
        else:
            key = _KEY_RE.match(line)
            if current == section and key and key.group(1) in values:
                if key.group(1) in pending:
                    out.append(f"{key.group(1)}={pending.pop(key.group(1))}")
                continue  # drop duplicates of a key already set
        out.append(line)
    flush()
    if pending:
        out.append(f"[{section}]")
        out.extend(f"{key}={value}" for key, value in pending.items())
    return "\n".join(out) + "\n"


def ensure_snakeoil_certificate() -> tuple[Path, Path]:
    """The snakeoil certificate and key, generated with ``make-ssl-cert`` first when missing."""
    if not (SNAKEOIL_CERT.exists() and SNAKEOIL_KEY.exists()):
        make_ssl_cert = shutil.which("make-ssl-cert") or "/usr/sbin/make-ssl-cert"
        subprocess.run([make_ssl_cert, "generate-default-snakeoil"], check=True, timeout=120)
    return SNAKEOIL_CERT, SNAKEOIL_KEY


def certificate_sha256(pem_path: Path) -> str:
    """SHA-256 (lowercase hex) of the DER of the first certificate in a PEM file."""
    match = _PEM_CERT_RE.search(pem_path.read_text())
    if match is None:
        raise XrdpError(f"no certificate in {pem_path}")
    return hashlib.sha256(ssl.PEM_cert_to_DER_cert(match.group(0))).hexdigest()


def free_loopback_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def remove_stale_pid_file() -> None:
    """Remove the system daemon's pid file when it names no running xrdp (xrdp refuses to start)."""
    try:
        pid = int(PID_FILE.read_text().strip() or "0")
    except FileNotFoundError:
        return
    except ValueError:
        pid = 0
    if pid > 0:
        try:
            comm = Path(f"/proc/{pid}/comm").read_text().strip()
        except OSError:  # no such process: stale
            comm = ""
        if comm == "xrdp":
            raise XrdpError(
                f"{PID_FILE} names a running xrdp daemon (pid {pid}); xrdp refuses to start while it"
                " exists. Stop the system service (systemctl stop xrdp) first."
            )
    with contextlib.suppress(FileNotFoundError):
        PID_FILE.unlink()


class XrdpServer:
    """One foreground xrdp on ``127.0.0.1:port`` with its files in ``workdir``; ``start()``/``stop()``.

    ``preexec_fn`` runs in the child before exec (the dev stack passes its die-with-parent hook).
    """

    def __init__(
        self,
        binary: str,
        workdir: Path,
        *,
        security: Security = "negotiate",
        port: int | None = None,
        start_timeout: float = 20.0,
        stop_timeout: float = 5.0,
        preexec_fn: Callable[[], None] | None = None,
    ) -> None:
        if security not in SECURITY_LAYER:
            raise ValueError(f"security must be one of {sorted(SECURITY_LAYER)}, got {security!r}")
        self.binary = binary
        self.security = security
        self.port = port if port is not None else free_loopback_port()
        self.start_timeout = start_timeout
        self.stop_timeout = stop_timeout
        self.preexec_fn = preexec_fn
        self.certificate_path, self.key_path = ensure_snakeoil_certificate()
        self.certificate_sha256 = certificate_sha256(self.certificate_path)
        self.workdir = workdir
        self.ini_path = workdir / "xrdp.ini"
        self.log_path = workdir / "xrdp.log"
        self.console_path = workdir / "console.log"
        self.pid_path = workdir / "xrdp.pid"
        self._process: subprocess.Popen[bytes] | None = None
        self._console: IO[bytes] | None = None
        workdir.mkdir(parents=True, exist_ok=True)
        self.write_ini()

    @property
    def address(self) -> str:
        return f"tcp://127.0.0.1:{self.port}"

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    def write_ini(self) -> None:
        text = SYSTEM_INI.read_text() if SYSTEM_INI.exists() else "[Globals]\n"
        text = set_ini_values(
            text,
            "Globals",
            {
                "port": self.address,
                "fork": "false",
                "security_layer": SECURITY_LAYER[self.security],
                "certificate": str(self.certificate_path),
                "key_file": str(self.key_path),
            },
        )
        text = set_ini_values(
            text,
            "Logging",
            {"LogFile": str(self.log_path), "LogLevel": "INFO", "EnableSyslog": "false"},
        )
        self.ini_path.write_text(text)

    def log_tail(self, lines: int = 30) -> str:
        parts = []
        for path in (self.log_path, self.console_path):
            if path.exists():
                tail = path.read_text(errors="replace").splitlines()[-lines:]
                parts.append(f"--- {path.name} ---\n" + "\n".join(tail))
        return "\n".join(parts) or "(xrdp wrote no log)"

    def _accepts_connections(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                return True
        except OSError:
            return False

    def _is_listening(self) -> bool:
        """Our process logged that it listens (so a foreign listener on the port does not count)."""
        if not self.log_path.exists():
            return False
        marker = f"listening to port {self.port} on 127.0.0.1"
        return marker in self.log_path.read_text(errors="replace")

    def spawn(self) -> None:
        """Start the process without waiting (``wait_until_listening`` waits)."""
        if self.running:
            return
        remove_stale_pid_file()
        with contextlib.suppress(FileNotFoundError):
            self.log_path.unlink()  # a restart must not see the previous run's "listening" line
        self._console = self.console_path.open("ab")
        self._process = subprocess.Popen(
            [self.binary, "--nodaemon", "--config", str(self.ini_path), "--port", self.address],
            stdin=subprocess.DEVNULL,
            stdout=self._console,
            stderr=subprocess.STDOUT,
            cwd=self.workdir,
            start_new_session=True,  # a Ctrl-C reaches our parent, which stops xrdp in its turn
            preexec_fn=self.preexec_fn,
        )
        self.pid_path.write_text(f"{self._process.pid}\n")

    def wait_until_listening(self, deadline: float | None = None) -> None:
        """Until xrdp logged that it listens and accepts a connection; stops it and raises otherwise."""
        if deadline is None:
            deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            if self._process is None or self._process.poll() is not None:
                code = None if self._process is None else self._process.returncode
                self._cleanup_process()
                raise XrdpError(f"xrdp exited with status {code} during start-up\n{self.log_tail()}")
            if self._is_listening() and self._accepts_connections():
                return
            time.sleep(0.05)
        self.stop()
        raise XrdpError(
            f"xrdp did not accept connections on 127.0.0.1:{self.port} within {self.start_timeout:g} s\n"
            f"{self.log_tail()}"
        )

    def start(self) -> XrdpServer:
        if not self.running:
            self.spawn()
            self.wait_until_listening()
        return self

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after ``stop_timeout``; idempotent."""
        process = self._process
        if process is None:
            return
        if process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=self.stop_timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=self.stop_timeout)
        self._cleanup_process()

    def _cleanup_process(self) -> None:
        self._process = None
        with contextlib.suppress(FileNotFoundError):
            self.pid_path.unlink()
        if self._console is not None:
            self._console.close()
            self._console = None

    def restart(self) -> XrdpServer:
        """Stop and start again on the same port."""
        self.stop()
        return self.start()

    def __repr__(self) -> str:
        state = f"pid {self.pid}" if self.running else "stopped"
        return f"{type(self).__name__}(security={self.security!r}, port={self.port}, {state})"
