"""What the tests of ``security/redaction.py`` log and must not see again: a JWT secret, a JWT signed
with it and a connection token; a logger's captured output (``Captured``, the ``captured`` fixture of
conftest.py), the records it handled (``RecordList``) and ``assert_clean``."""

from __future__ import annotations

import io
import logging

from security.jwt_auth import mint_token
from security.redaction import CONNECTION_TOKEN_PREFIX

SECRET = "jwt-signing-secret-0123456789abcdefghijklmnopqrstuvwxyz"
JWT = mint_token(secret=SECRET, subject="alice", roles=["user"], audience="rdp-controller", ttl_seconds=60)
CONNECTION_TOKEN = CONNECTION_TOKEN_PREFIX + "Zm9vYmFyLWJhei1xdXV4LTAxMjM0NTY3ODlhYmNkZWZnaGk"


class Captured:
    """A logger writing through a real StreamHandler into a StringIO, with redaction installed."""

    def __init__(self, logger: logging.Logger, stream: io.StringIO, records: list[logging.LogRecord]) -> None:
        self.logger = logger
        self.stream = stream
        self.records = records

    @property
    def text(self) -> str:
        return self.stream.getvalue()


class RecordList(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.format(record)
        self.records.append(record)


def assert_clean(text: str, *values: str) -> None:
    for value in (SECRET, JWT, CONNECTION_TOKEN, *values):
        assert value not in text
