#!/usr/bin/env python3
"""
RDP Controller service entrypoint.

The container's CMD (distroless: no shell). Reads the port from ``RDP_CONTROLLER_PORT``,
loads and checks the configuration, and runs uvicorn bound to 0.0.0.0. Any problem exits 1
with a message that names the setting.
"""

from __future__ import annotations

import os
import signal
import sys
import tempfile
from typing import Any

SITE_PACKAGES = "/usr/local/lib/python3.11/site-packages"
APP_PATH = "/app"
DEFAULT_PORT = "8092"


def main() -> int:
    # Run as a script, this file's folder leads sys.path; the package must be imported as a package.
    here = os.path.dirname(os.path.abspath(__file__))
    sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != here]
    for path in (SITE_PACKAGES, APP_PATH):
        if os.path.isdir(path) and path not in sys.path:
            sys.path.insert(0, path)

    port_text = os.getenv("RDP_CONTROLLER_PORT", DEFAULT_PORT)
    try:
        port = int(port_text)
        if not 1 <= port <= 65535:
            raise ValueError(port_text)
    except ValueError:
        print(
            f"ERROR: Invalid RDP_CONTROLLER_PORT value: {port_text!r} (a port number 1-65535)",
            file=sys.stderr,
        )
        return 1

    try:
        import uvicorn

        from rdp_controller.config import ConfigError, load_config
        from rdp_controller.main import create_app
    except ImportError as exc:
        print(f"ERROR: Failed to import the service: {exc}", file=sys.stderr)
        return 1

    try:
        config = load_config()
    except ConfigError as exc:
        print(f"ERROR: {exc}", file=sys.stderr)
        return 1

    # Always bind to all interfaces inside the container (template rule); RDP_CONTROLLER_HOST is
    # the name other services use to reach this one. log_config=None: uvicorn's records go through
    # the service's own handler, which redacts secrets and tokens.
    workers = config.settings.RDP_CONTROLLER_WORKERS
    app: Any
    options: dict[str, Any] = {}
    if workers > 1:
        # uvicorn's supervisor binds the HTTP port and starts the workers; each builds its own app
        # (create_app loads the same configuration) and its own RDP relay listener (SO_REUSEPORT).
        # Metrics: prometheus_client's multiprocess mode, set before any worker imports it.
        try:
            prepare_multiprocess_metrics()
        except OSError as exc:
            print(f"ERROR: PROMETHEUS_MULTIPROC_DIR: {exc}", file=sys.stderr)
            return 1
        app, options = "rdp_controller.main:create_app", {"factory": True, "workers": workers}
    else:
        app = create_app(config.settings)
        # uvicorn shuts down gracefully on SIGTERM, then raises the signal again under the handler it
        # found at start: a no-op here, so `docker stop` ends with exit code 0 rather than 143.
        # (Several workers: uvicorn's supervisor handles the signals itself.)
        signal.signal(signal.SIGTERM, lambda _signum, _frame: None)
    uvicorn.run(app, host="0.0.0.0", port=port, log_config=None, **options)
    return 0


def prepare_multiprocess_metrics() -> str:
    """``PROMETHEUS_MULTIPROC_DIR`` for the workers: the one given, emptied of a previous run's files, or a
    fresh folder under the temporary directory."""
    path = os.environ.get("PROMETHEUS_MULTIPROC_DIR") or tempfile.mkdtemp(prefix="rdp-controller-metrics-")
    os.makedirs(path, exist_ok=True)
    for name in os.listdir(path):
        if name.endswith(".db"):
            os.remove(os.path.join(path, name))
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = path
    return path


if __name__ == "__main__":
    sys.exit(main())
