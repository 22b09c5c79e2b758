"""Container health check: ``python -m rdp_controller.healthcheck``.

Asks ``GET /health`` on the port the service listens on (``RDP_CONTROLLER_PORT``, default 8092)
over loopback: exit 0 for 200 (healthy or degraded), 1 for anything else (503 when MongoDB is
down, a refused connection, a timeout). Standard library only, no shell: the runtime image is
distroless, and this module must stay importable without the service's dependencies.
"""

from __future__ import annotations

import http.client
import os
import sys
from collections.abc import Mapping

DEFAULT_PORT = 8092
TIMEOUT_SECONDS = 5.0


def port_from_env(environ: Mapping[str, str] = os.environ) -> int:
    text = environ.get("RDP_CONTROLLER_PORT", "") or str(DEFAULT_PORT)
    port = int(text)
    if not 1 <= port <= 65535:
        raise ValueError(text)
    return port


def check(port: int, host: str = "127.0.0.1", timeout: float = TIMEOUT_SECONDS) -> tuple[bool, str]:
    """(passed, a one-line reason)."""
    connection = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        connection.request("GET", "/health", headers={"Accept": "application/json"})
        response = connection.getresponse()
        body = response.read(4096)
    except (OSError, http.client.HTTPException) as exc:
        return False, f"GET http://{host}:{port}/health failed: {exc}"
    finally:
        connection.close()
    status = response.status
    summary = body.decode("utf-8", "replace").replace("\n", " ")[:200]
    return status == 200, f"GET /health on port {port}: {status} {summary}"


def main() -> int:
    try:
        port = port_from_env()
    except ValueError:
        print(f"healthcheck: invalid RDP_CONTROLLER_PORT {os.environ.get('RDP_CONTROLLER_PORT')!r}")
        return 1
    passed, reason = check(port)
    print(f"healthcheck: {'ok' if passed else 'FAILED'}: {reason}")
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
