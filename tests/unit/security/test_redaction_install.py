"""install_redaction: on the handlers (so child loggers are covered), once, and on the root logger
by default."""

from __future__ import annotations

import io
import logging
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

from security.redaction import REDACTED, RedactingFilter, install_redaction
from tests.unit.security.redacted_logger import JWT, SECRET, Captured


@contextmanager
def parent_logger() -> Iterator[tuple[logging.Logger, io.StringIO]]:
    """A logger of its own that does not propagate, with one StreamHandler into the StringIO."""
    parent = logging.getLogger(f"test.redaction.parent.{uuid.uuid4().hex}")
    parent.propagate = False
    parent.setLevel(logging.INFO)
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    parent.addHandler(handler)
    try:
        yield parent, stream
    finally:
        parent.removeHandler(handler)
        handler.close()


def test_child_logger_records_are_redacted_by_the_handler_filter() -> None:
    with parent_logger() as (parent, stream):
        install_redaction(SECRET, logger=parent)
        parent.getChild("sessions").info("secret is %s", SECRET)
        assert SECRET not in stream.getvalue()
        assert REDACTED in stream.getvalue()


def test_a_logger_filter_would_not_cover_child_loggers() -> None:
    # Why install_redaction attaches to handlers: logging skips ancestor *logger* filters.
    with parent_logger() as (parent, stream):
        parent.addFilter(RedactingFilter(SECRET))
        parent.getChild("sessions").info("secret is %s", SECRET)
        assert SECRET in stream.getvalue()


def test_install_is_idempotent_and_replaces_the_secret(captured: Captured) -> None:
    new_secret = "rotated-secret-0123456789abcdefghijklmnopqrstuvwxyz"
    install_redaction(new_secret, logger=captured.logger)
    for handler in captured.logger.handlers:
        assert sum(isinstance(item, RedactingFilter) for item in handler.filters) == 1
    captured.logger.info("keys %s %s", SECRET, new_secret)
    assert SECRET in captured.text
    assert new_secret not in captured.text


def test_install_defaults_to_the_root_logger() -> None:
    root = logging.getLogger()
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    root.addHandler(handler)
    child = logging.getLogger(f"test.redaction.root.{uuid.uuid4().hex}")
    child.setLevel(logging.INFO)
    try:
        redacting = install_redaction(SECRET)
        assert redacting in handler.filters
        child.info("Bearer %s", JWT)
        assert JWT not in stream.getvalue()
        assert f"Bearer {REDACTED}" in stream.getvalue()
    finally:
        root.removeHandler(handler)
        handler.close()
        for other in root.handlers:
            for item in [f for f in other.filters if isinstance(f, RedactingFilter)]:
                other.removeFilter(item)
