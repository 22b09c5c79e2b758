"""Log redaction, exercised with real log records through real handlers: what is hidden (tokens, the
configured secret, sensitive key/value pairs) and what is kept. How records are handled:
test_redaction_records.py; where the filter is installed: test_redaction_install.py."""

from __future__ import annotations

import logging
import re
import time

import pytest

from security.redaction import CONNECTION_TOKEN_PREFIX, REDACTED, RedactingFilter
from tests.unit.security.redacted_logger import CONNECTION_TOKEN, JWT, SECRET, Captured, assert_clean

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


# --- performance --------------------------------------------------------------------------------


@pytest.mark.parametrize("unit", ["a-", "a.", "token=", "'password':", "Bearer ", "eyJa.", "x://a:", "rct_"])
def test_long_pathological_input_is_linear(unit: str) -> None:
    text = unit * (200_000 // len(unit))
    started = time.perf_counter()
    RedactingFilter(SECRET).redact(text)
    assert time.perf_counter() - started < 2.0
