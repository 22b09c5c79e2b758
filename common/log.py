"""Logging set-up shared by Lucid services: one line per record, level from LOG_LEVEL, redaction on."""

from __future__ import annotations

import logging
import sys

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
# Loggers that keep handlers of their own (uvicorn's, when its CLI configured logging).
OWN_HANDLER_LOGGERS = ("uvicorn", "uvicorn.error", "uvicorn.access")
HANDLER_NAME = "lucid"  # the root handler setup_logging adds, found again by name


def setup_logging(level: str, *, secret: str | None = None) -> None:
    """Configure the root logger once (idempotent) and put the redaction filter on every handler."""
    from security.redaction import install_redaction

    root = logging.getLogger()
    if not any(handler.get_name() == HANDLER_NAME for handler in root.handlers):
        handler = logging.StreamHandler(sys.stderr)
        handler.set_name(HANDLER_NAME)
        handler.setFormatter(logging.Formatter(LOG_FORMAT))
        root.addHandler(handler)
    root.setLevel(level)
    install_redaction(secret)
    for name in OWN_HANDLER_LOGGERS:
        # The redaction filter formats each record and empties its args; uvicorn's own formatters
        # read the args again, so these handlers get the plain format first.
        own = logging.getLogger(name)
        for own_handler in own.handlers:
            own_handler.setFormatter(logging.Formatter(LOG_FORMAT))
        install_redaction(secret, logger=own)
