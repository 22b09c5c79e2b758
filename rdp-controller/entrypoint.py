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
    app = create_app(config.settings)
    # uvicorn shuts down gracefully on SIGTERM, then raises the signal again under the handler it
    # found at start: a no-op here, so `docker stop` ends with exit code 0 rather than 143.
    signal.signal(signal.SIGTERM, lambda _signum, _frame: None)
    uvicorn.run(app, host="0.0.0.0", port=port, log_config=None)
    return 0


if __name__ == "__main__":
    sys.exit(main())
