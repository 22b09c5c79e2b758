"""RDP clients for tests: the real one (FreeRDP's ``xfreerdp`` under Xvfb) and a raw socket one.

``Display`` runs Xvfb on a free display number; ``FreeRdp`` opens a ``.rdp`` file as a person
would (``xfreerdp FILE.rdp /cert:ignore``) and can take a screenshot of what it shows.
``RawClient`` speaks just the first PDUs (an optional Pre-Connection PDU and the X.224
Connection Request) to a relay, for the cases no real client sends.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from pathlib import Path
from types import TracebackType

import pytest

from protocol.negotiation import NegotiationFailure
from protocol.pcb import PreconnectionPdu, encode_preconnection_pdu
from protocol.tpkt import TPKT_HEADER_LENGTH
from protocol.x224 import ConnectionRequest, decode_connection_confirm, encode_connection_request

IN_CI = os.environ.get("CI", "").strip().lower() == "true"


def require(binary: str, package: str) -> str:
    """The binary's path, or skip (with ``CI=true``: fail) naming the Debian package."""
    found = shutil.which(binary)
    if found is None:
        message = f"{binary} is not installed (Debian package {package})"
        if IN_CI:
            pytest.fail(f"{message}; CI=true, so this is a failure, not a skip")
        pytest.skip(message)
    return found


class Display:
    """An Xvfb X server on the first free display number from 90; ``with`` stops it."""

    def __init__(self, size: str = "1280x1024x24") -> None:
        self.binary = require("Xvfb", "xvfb")
        self.size = size
        self.number = next(n for n in range(90, 200) if not Path(f"/tmp/.X11-unix/X{n}").exists())
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def name(self) -> str:
        return f":{self.number}"

    def __enter__(self) -> Display:
        self.process = subprocess.Popen(
            [self.binary, self.name, "-screen", "0", self.size, "-nolisten", "tcp"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while not Path(f"/tmp/.X11-unix/X{self.number}").exists():
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"Xvfb {self.name} did not start")
            time.sleep(0.05)
        return self

    def screenshot(self, path: Path) -> Path:
        """``import -window root`` (imagemagick): what a person would see."""
        subprocess.run(
            [require("import", "imagemagick"), "-window", "root", str(path)],
            env={**os.environ, "DISPLAY": self.name},
            check=True,
            timeout=30,
        )
        return path

    def colours(self, path: Path) -> int:
        """How many distinct colours a screenshot has (1 means a blank screen)."""
        result = subprocess.run(
            [require("identify", "imagemagick"), "-format", "%k", str(path)],
            capture_output=True,
            text=True,
            check=True,
            timeout=30,
        )
        return int(result.stdout.strip())

    def move_pointer(self, x: int, y: int) -> None:
        """Client input: move the pointer over the client's window (xdotool)."""
        subprocess.run(
            [require("xdotool", "xdotool"), "mousemove", str(x), str(y)],
            env={**os.environ, "DISPLAY": self.name},
            check=True,
            timeout=10,
        )

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait(timeout=10)


class FreeRdp:
    """``xfreerdp FILE.rdp /cert:ignore`` on a display, its output in a log file; ``with`` kills it."""

    def __init__(self, rdp_file: Path, display: Display, log_path: Path, *extra: str) -> None:
        self.argv = [require("xfreerdp", "freerdp2-x11"), str(rdp_file), "/cert:ignore", *extra]
        self.display = display
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> FreeRdp:
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                self.argv,
                env={**os.environ, "DISPLAY": self.display.name},
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        return self

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.kill()


class RawClient:
    """A TCP connection to a relay that sends what a test says; ``with`` closes it."""

    def __init__(self, port: int, *, source: str = "127.0.0.1", timeout: float = 10.0) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout, source_address=(source, 0))

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def hello(self, token: str | None = None, *, pcb: str | None = None) -> None:
        """An X.224 Connection Request with ``token`` as routing token, after a PCB when ``pcb`` is set."""
        if pcb is not None:
            self.send(encode_preconnection_pdu(PreconnectionPdu(blob=pcb)))
        routing = None if token is None else token.encode() + b"\r\n"
        self.send(encode_connection_request(ConnectionRequest(routing_token=routing)))

    def read_all(self) -> bytes:
        """Everything until the other side closes (or the timeout)."""
        chunks = []
        try:
            while chunk := self.sock.recv(65536):
                chunks.append(chunk)
        except TimeoutError:
            chunks.append(b"<timeout>")
        except ConnectionResetError:
            pass
        return b"".join(chunks)

    def confirm(self) -> object:
        """Read one TPKT and decode it as an X.224 Connection Confirm."""
        header = self._exactly(TPKT_HEADER_LENGTH)
        return decode_connection_confirm(
            header + self._exactly(int.from_bytes(header[2:4]) - TPKT_HEADER_LENGTH)
        )

    def refused(self) -> bool:
        """True when the relay answered RDP_NEG_FAILURE and then closed."""
        answer = self.confirm()
        return isinstance(answer, NegotiationFailure) and self.read_all() == b""

    def _exactly(self, count: int) -> bytes:
        data = b""
        while len(data) < count:
            chunk = self.sock.recv(count - len(data))
            if not chunk:
                raise AssertionError(f"closed after {len(data)} of {count} bytes")
            data += chunk
        return data

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> RawClient:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
