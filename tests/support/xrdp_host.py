"""Run a real xrdp (Debian package, 0.9.x) on a private loopback port for tests.

    with XrdpHost(security="negotiate") as host:
        ...  # host.port, host.certificate_sha256

The process, its ``xrdp.ini`` and what xrdp 0.9.21 needs worked around are
:class:`common.xrdp.XrdpServer` (the dev stack runs the same class for ``make run``). This
adds what tests need: a temporary directory of its own, removed on exit, and a skip (or, with
``CI=true``, a failure) when xrdp is not installed.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from types import TracebackType

import pytest

from common.xrdp import (
    PID_FILE,
    Security,
    XrdpServer,
    certificate_sha256,
    ensure_snakeoil_certificate,
    find_xrdp,
    free_loopback_port,
    set_ini_values,
)
from common.xrdp import XrdpError as XrdpHostError

__all__ = [
    "PID_FILE",
    "Security",
    "XrdpHost",
    "XrdpHostError",
    "certificate_sha256",
    "ensure_snakeoil_certificate",
    "find_xrdp",
    "free_loopback_port",
    "require_xrdp",
    "set_ini_values",
]


def require_xrdp() -> str:
    """The xrdp binary, or skip the test; with ``CI=true`` a missing xrdp fails the test instead."""
    binary = find_xrdp()
    if binary is None:
        message = "the xrdp binary is not installed (Debian package xrdp)"
        if os.environ.get("CI", "").strip().lower() == "true":
            pytest.fail(f"{message}; CI=true, so this is a failure, not a skip")
        pytest.skip(message)
    return binary


class XrdpHost(XrdpServer):
    """One foreground xrdp on ``127.0.0.1:port`` in a temporary directory; ``with`` or ``close()``."""

    def __init__(
        self,
        security: Security = "negotiate",
        *,
        port: int | None = None,
        start_timeout: float = 20.0,
        stop_timeout: float = 5.0,
    ) -> None:
        binary = require_xrdp()
        workdir = Path(tempfile.mkdtemp(prefix="xrdp-host-"))
        try:
            super().__init__(
                binary,
                workdir,
                security=security,
                port=port,
                start_timeout=start_timeout,
                stop_timeout=stop_timeout,
            )
        except BaseException:
            shutil.rmtree(workdir, ignore_errors=True)
            raise

    def close(self) -> None:
        """Stop and delete the temporary directory."""
        self.stop()
        shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> XrdpHost:
        try:
            self.start()
        except BaseException:
            self.close()  # __exit__ will not run; the error already carries the log tail
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()
