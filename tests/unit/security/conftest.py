"""Fixtures of the security unit tests: `captured`, a logger with redaction installed whose output is kept."""

from __future__ import annotations

import io
import logging
import uuid
from collections.abc import Iterator

import pytest

from security.redaction import install_redaction
from tests.unit.security.redacted_logger import SECRET, Captured, RecordList


@pytest.fixture
def captured() -> Iterator[Captured]:
    logger = logging.getLogger(f"test.redaction.{uuid.uuid4().hex}")
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    recorder = RecordList()
    logger.addHandler(handler)
    logger.addHandler(recorder)
    install_redaction(SECRET, logger=logger)
    yield Captured(logger, stream, recorder.records)
    for item in (handler, recorder):
        logger.removeHandler(item)
        item.close()
