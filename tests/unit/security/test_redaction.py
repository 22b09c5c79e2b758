"""Log redaction, exercised with real log records through real handlers."""

from __future__ import annotations

import io
import logging
import re
import time
import uuid
from collections.abc import Iterator

import pytest

from security.jwt_auth import mint_token
from security.redaction import (
    CONNECTION_TOKEN_PREFIX,
    REDACTED,
    RedactingFilter,
    install_redaction,
)

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


def assert_clean(text: str, *values: str) -> None:
    for value in (SECRET, JWT, CONNECTION_TOKEN, *values):
        assert value not in text


# --- tokens -------------------------------------------------------------------------------------


def test_bearer_header_in_args(captured: Captured) -> None:
    captured.logger.info("auth header %s", f"Bearer {JWT}")
    assert_clean(captured.text)
    assert f"auth header Bearer {REDACTED}" in captured.text


def test_authorization_header_with_other_schemes(captured: Captured) -> None:
    captured.logger.info("headers: Authorization: Basic dXNlcjpodW50ZXIy, Accept: */*")
    assert "dXNlcjpodW50ZXIy" not in captured.text
    assert f"Authorization: {REDACTED}, Accept: */*" in captured.text


def test_bare_jwt(captured: Captured) -> None:
    captured.logger.warning("decoded %s for %s", JWT, "alice")
    assert_clean(captured.text)
    assert f"decoded {REDACTED} for alice" in captured.text


def test_jwt_segments_do_not_survive(captured: Captured) -> None:
    captured.logger.info("token=%s", JWT)
    for segment in JWT.split("."):
        assert segment not in captured.text


def test_connection_token_keeps_its_prefix(captured: Captured) -> None:
    captured.logger.info("redeeming %s for session %s", CONNECTION_TOKEN, "s-1")
    assert_clean(captured.text)
    assert f"redeeming {CONNECTION_TOKEN_PREFIX}{REDACTED} for session s-1" in captured.text


def test_custom_connection_token_prefix() -> None:
    redacting = RedactingFilter(connection_token_prefixes=["gw_"])
    assert redacting.redact("ticket gw_abcdefghijklmnopqrstuvwxyz01") == f"ticket gw_{REDACTED}"


def test_extra_pattern() -> None:
    redacting = RedactingFilter(extra_patterns=[re.compile(r"\bAKIA[0-9A-Z]{16}\b")])
    assert redacting.redact("key AKIAABCDEFGHIJKLMNOP used") == f"key {REDACTED} used"


# --- the configured secret ----------------------------------------------------------------------


def test_secret_value_in_message(captured: Captured) -> None:
    captured.logger.error("loaded JWT_SECRET_KEY %s from env", SECRET)
    assert_clean(captured.text)
    assert f"loaded JWT_SECRET_KEY {REDACTED} from env" in captured.text


def test_secret_in_exception_traceback(captured: Captured) -> None:
    def connect() -> None:
        raise RuntimeError(f"handshake failed with key {SECRET} and Bearer {JWT}")

    try:
        connect()
    except RuntimeError:
        captured.logger.exception("connection to %s failed", "rdp-01")
    assert_clean(captured.text)
    assert "Traceback (most recent call last)" in captured.text
    assert "RuntimeError: handshake failed with key [REDACTED] and Bearer [REDACTED]" in captured.text
    assert "connection to rdp-01 failed" in captured.text


def test_exception_via_exc_info_argument(captured: Captured) -> None:
    try:
        {"password": "hunter2"}["missing"]
    except KeyError as exc:
        captured.logger.warning("lookup failed", exc_info=exc)
    assert "KeyError: 'missing'" in captured.text
    assert "hunter2" not in captured.text


def test_stack_info_is_redacted(captured: Captured) -> None:
    record = captured.logger.makeRecord(
        captured.logger.name,
        logging.INFO,
        __file__,
        1,
        "with stack",
        (),
        None,
        sinfo=f"Stack (most recent call last):\n  call(token={JWT!r}, key={SECRET!r})",
    )
    captured.logger.handle(record)
    assert "Stack (most recent call last)" in captured.text
    assert_clean(captured.text)


def test_extra_secrets() -> None:
    redacting = RedactingFilter(SECRET, extra_secrets=["mongo-password-123"])
    assert redacting.redact("a mongo-password-123 b " + SECRET) == f"a {REDACTED} b {REDACTED}"


def test_short_secrets_are_not_replaced_literally() -> None:
    # A 3-character development secret would otherwise turn every "abc" into [REDACTED].
    assert RedactingFilter("abc").redact("abc def") == "abc def"


# --- key/value pairs ----------------------------------------------------------------------------


def test_dict_as_the_message(captured: Captured) -> None:
    captured.logger.warning({"password": "hunter2", "user": "bob"})
    assert "hunter2" not in captured.text
    assert f"{{'password': '{REDACTED}', 'user': 'bob'}}" in captured.text


def test_dict_argument_with_named_placeholders(captured: Captured) -> None:
    captured.logger.info("login %(user)s with %(password)s", {"user": "bob", "password": "hunter2"})
    assert "hunter2" not in captured.text
    assert f"login bob with {REDACTED}" in captured.text


def test_nested_dict_argument(captured: Captured) -> None:
    payload = {"server": {"host": "rdp-01", "api_key": "k-123", "auth": {"client_secret": "cs-456"}}}
    captured.logger.info("payload %s", payload)
    assert "k-123" not in captured.text
    assert "cs-456" not in captured.text
    assert "rdp-01" in captured.text
    assert payload["server"]["api_key"] == "k-123", "the caller's dict must not be modified"


def test_list_and_tuple_arguments(captured: Captured) -> None:
    captured.logger.info("batch %s %s", [{"token": "t-1"}], ({"passwd": "p-2"},))
    assert "t-1" not in captured.text
    assert "p-2" not in captured.text


@pytest.mark.parametrize(
    ("text", "hidden"),
    [
        ("password=hunter2&user=bob", "hunter2"),
        ("db password: hunter2", "hunter2"),
        ('{"password": "hun\\"ter2", "user": "bob"}', "ter2"),
        ("{'secret': 'abc123def'}", "abc123def"),
        ("SECRET_KEY=abc123def", "abc123def"),
        ("api_key=k-123 api-key: k-456 apikey=k-789 X-Api-Key: k-000", "k-"),
        ("access_token=at-1; refresh_token=rt-2", "t-"),
        ("client_secret='cs 1 2 3'", "cs 1 2 3"),
        ("passphrase = open-sesame", "open-sesame"),
        ("credentials=c-1", "c-1"),
        ("redis://:hunter2@lucid-redis:6379/0", "hunter2"),
        ("mongodb://lucid:hunter2@lucid-mongodb:27017/lucid", "hunter2"),
    ],
)
def test_key_value_pairs_in_text(captured: Captured, text: str, hidden: str) -> None:
    captured.logger.info(text)
    assert hidden not in captured.text
    assert REDACTED in captured.text


def test_url_credentials_keep_the_rest_of_the_url(captured: Captured) -> None:
    captured.logger.info("connecting to %s", "mongodb://lucid:hunter2@lucid-mongodb:27017/lucid")
    assert f"mongodb://lucid:{REDACTED}@lucid-mongodb:27017/lucid" in captured.text


def test_descriptive_keys_are_kept(captured: Captured) -> None:
    captured.logger.info(
        "issued token_id=%s token_ttl=%s token_type=%s for %s",
        "tok-1",
        120,
        "bearer",
        {"user": "bob", "token_id": "tok-1", "token_count": 3},
    )
    assert "token_id=tok-1 token_ttl=120 token_type=bearer" in captured.text
    assert "'token_id': 'tok-1', 'token_count': 3" in captured.text


@pytest.mark.parametrize(
    "text",
    [
        "session s-1 started on rdp-01:3389 for user bob",
        "rdp-controller version 1.2.3 listening on http://rdp-controller:8092/health",
        "100% of 3 servers healthy",
        "token has expired",
        "direct_connection_timeout_seconds=30",
    ],
)
def test_ordinary_lines_are_untouched(captured: Captured, text: str) -> None:
    captured.logger.info(text)
    assert captured.text == f"INFO {captured.logger.name}: {text}\n"


def test_extra_fields_are_redacted(captured: Captured) -> None:
    captured.logger.info(
        "request", extra={"api_token": "t-1", "client": {"password": "p-1", "ip": "10.0.0.1"}, "note": JWT}
    )
    record = captured.records[-1]
    assert vars(record)["api_token"] == REDACTED
    assert vars(record)["client"] == {"password": REDACTED, "ip": "10.0.0.1"}
    assert vars(record)["note"] == REDACTED


# --- record handling ----------------------------------------------------------------------------


def test_record_is_formatted_first_then_args_cleared(captured: Captured) -> None:
    captured.logger.info("user %s has %d sessions", "bob", 2)
    record = captured.records[-1]
    assert record.args == ()
    assert record.msg == "user bob has 2 sessions"
    assert record.getMessage() == "user bob has 2 sessions"


def test_percent_in_arguments_survives_a_second_format(captured: Captured) -> None:
    # After redaction args are (), so "%s" coming from an argument is never re-interpreted.
    captured.logger.info("raw %s", "100%s done")
    assert "raw 100%s done" in captured.text


class Unprintable:
    def __str__(self) -> str:
        raise RuntimeError("no str for you")

    def __repr__(self) -> str:
        raise RuntimeError("no repr either")


@pytest.mark.parametrize(
    ("msg", "args", "expected"),
    [
        ("%s and %s", ("one",), "could not be formatted: TypeError"),
        ("%d sessions", ("many",), "could not be formatted: TypeError"),
        ("%(missing)s", ({"present": 1},), "could not be formatted: KeyError"),
        ("value %s", (Unprintable(),), "could not be formatted: RuntimeError"),
        (Unprintable(), (), "<unprintable Unprintable: RuntimeError>"),
        (42, (), "42"),
        (None, (), "None"),
    ],
)
def test_odd_records_do_not_crash(
    captured: Captured, msg: object, args: tuple[object, ...], expected: str
) -> None:
    captured.logger.info(msg, *args)
    assert expected in captured.text


def test_unformattable_record_is_still_redacted(captured: Captured) -> None:
    captured.logger.info("%s %s %s", f"Bearer {JWT}", SECRET)
    assert "could not be formatted" in captured.text
    assert_clean(captured.text)


def test_filter_runs_twice_without_damage(captured: Captured) -> None:
    # Two handlers share one record; the second filter pass must leave the first one's work intact.
    captured.logger.info("Authorization: Bearer %s password=%s", JWT, "hunter2")
    lines = captured.text.splitlines()
    assert lines == [f"INFO {captured.logger.name}: Authorization: {REDACTED} password={REDACTED}"]
    assert captured.records[-1].getMessage() == f"Authorization: {REDACTED} password={REDACTED}"


# --- installation -------------------------------------------------------------------------------


def test_child_logger_records_are_redacted_by_the_handler_filter() -> None:
    parent = logging.getLogger(f"test.redaction.parent.{uuid.uuid4().hex}")
    parent.propagate = False
    parent.setLevel(logging.INFO)
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    parent.addHandler(handler)
    try:
        install_redaction(SECRET, logger=parent)
        parent.getChild("sessions").info("secret is %s", SECRET)
        assert SECRET not in stream.getvalue()
        assert REDACTED in stream.getvalue()
    finally:
        parent.removeHandler(handler)
        handler.close()


def test_a_logger_filter_would_not_cover_child_loggers() -> None:
    # Why install_redaction attaches to handlers: logging skips ancestor *logger* filters.
    parent = logging.getLogger(f"test.redaction.parent.{uuid.uuid4().hex}")
    parent.propagate = False
    parent.setLevel(logging.INFO)
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    parent.addHandler(handler)
    parent.addFilter(RedactingFilter(SECRET))
    try:
        parent.getChild("sessions").info("secret is %s", SECRET)
        assert SECRET in stream.getvalue()
    finally:
        parent.removeHandler(handler)
        handler.close()


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


# --- performance --------------------------------------------------------------------------------


@pytest.mark.parametrize("unit", ["a-", "a.", "token=", "'password':", "Bearer ", "eyJa.", "x://a:", "rct_"])
def test_long_pathological_input_is_linear(unit: str) -> None:
    text = unit * (200_000 // len(unit))
    started = time.perf_counter()
    RedactingFilter(SECRET).redact(text)
    assert time.perf_counter() - started < 2.0
