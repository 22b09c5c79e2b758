"""Log redaction: credentials never reach a log line.

``RedactingFilter`` rewrites each record before a handler formats it. It replaces with
``[REDACTED]``:

* the configured secret (``JWT_SECRET_KEY``) wherever it appears, and any extra secrets given;
* ``Bearer <token>`` and ``Authorization: <scheme> <credentials>`` values;
* JWT-looking strings (three base64url segments starting ``eyJ``);
* one-time connection tokens (``rct_`` + 16 or more URL-safe characters; the prefix is kept so
  the line still says a connection token was there);
* the password in URLs (``redis://:pw@host``, ``mongodb://user:pw@host``);
* values of sensitive keys - names containing ``password``, ``passwd``, ``passphrase``,
  ``secret``, ``token``, ``api_key``/``apikey``, ``authorization`` or ``credential`` - in text
  (``password=x``, ``token: x``, ``"secret": "x"``, ``{'api_key': 'x'}``), in dict arguments
  (``logger.info("%(password)s", {...})``, ``logger.warning({"password": "x"})``) and in
  ``extra=`` fields. Keys that only describe a credential (``token_id``, ``token_ttl``,
  ``token_type``, ``*_count``, ``*_expires_at`` ...) are kept, so audit lines stay useful.

The message is formatted first (``msg % args``), then redacted, and the record is left with
``args=()`` so no handler can format the raw arguments again. Exception tracebacks
(``exc_text``) and ``stack_info`` are redacted too. The filter never raises into the logging
call: a record whose message cannot be formatted is logged with a note instead.

Why handlers and not loggers: a filter on a logger only sees records logged on *that* logger;
records from child loggers (``rdp_controller.sessions`` ...) propagate straight to the
ancestors' *handlers*, skipping the ancestors' logger filters. A filter on each handler sees
every record the handler writes. ``install_redaction`` therefore attaches the filter to the
handlers present when it is called: call it after logging is configured, and call it again
(with ``logger=``) for loggers that have their own handlers and do not propagate, such as
uvicorn's ``uvicorn.access`` and ``uvicorn.error``.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterable
from types import TracebackType
from typing import Final

REDACTED: Final = "[REDACTED]"
CONNECTION_TOKEN_PREFIX: Final = "rct_"
"""One-time connection tokens are ``rct_`` + ``secrets.token_urlsafe(32)`` (43 characters)."""
MIN_REDACTED_SECRET_LENGTH: Final = 8
"""Shorter secrets (development only; production requires 32+) are not replaced literally,
since replacing every occurrence of a 3-letter string would mangle every line."""

_KEY_WORDS = r"(?:password|passwd|passphrase|secret|token|api[_-]?key|apikey|authorization|credential)"
_KEY_CHARS = r"[A-Za-z0-9_.\-]{0,40}"
_KEY = rf"{_KEY_CHARS}{_KEY_WORDS}{_KEY_CHARS}"
# The value of a key=value pair: already redacted, a quoted string, or a run up to a delimiter.
_VALUE = r"""\[REDACTED\]|"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|[^\s,;&)}\]]+"""

SENSITIVE_KEY_PATTERN: Final = re.compile(_KEY_WORDS, re.IGNORECASE)
NON_SECRET_KEY_PATTERN: Final = re.compile(
    r"[_.\-](?:id|ids|ttl|type|count|length|len|expires|expires_at|expiry|prefix)$", re.IGNORECASE
)
URL_CREDENTIALS_PATTERN: Final = re.compile(
    r"(?P<prefix>\b[A-Za-z][A-Za-z0-9+.\-]{0,30}://[^:/?#@\s]{0,256}:)(?P<value>[^@/?#\s]{1,256})(?=@)"
)
AUTHORIZATION_PATTERN: Final = re.compile(
    r"""(?P<prefix>(?<![A-Za-z0-9_\-])(?:proxy-)?authorization["']?\s*[:=]\s*)"""
    r"""(?P<value>\[REDACTED\]|"[^"]*"|'[^']*'|(?:[A-Za-z][A-Za-z0-9_\-]*[ \t]+)?[^\s,;'"]+)""",
    re.IGNORECASE,
)
BEARER_PATTERN: Final = re.compile(r"(?P<prefix>\bbearer\s+)(?P<value>[A-Za-z0-9\-._~+/]+=*)", re.IGNORECASE)
JWT_PATTERN: Final = re.compile(r"\beyJ[A-Za-z0-9_\-]+\.[A-Za-z0-9_\-]+\.[A-Za-z0-9_\-]*")


def token_prefix_pattern(prefix: str) -> re.Pattern[str]:
    """A pattern for ``prefix`` followed by 16 or more URL-safe characters (prefix kept on redaction)."""
    return re.compile(rf"(?<![A-Za-z0-9])(?P<prefix>{re.escape(prefix)})(?P<value>[A-Za-z0-9_\-]{{16,}})")


CONNECTION_TOKEN_PATTERN: Final = token_prefix_pattern(CONNECTION_TOKEN_PREFIX)
QUOTED_KEY_VALUE_PATTERN: Final = re.compile(
    rf"""(?P<prefix>(?P<quote>["'])(?P<key>{_KEY})(?P=quote)\s*[:=]\s*)(?P<value>{_VALUE})""",
    re.IGNORECASE,
)
PLAIN_KEY_VALUE_PATTERN: Final = re.compile(
    rf"""(?P<prefix>(?<![A-Za-z0-9_.\-"'])(?P<key>{_KEY})\s*[:=]\s*)(?P<value>{_VALUE})""",
    re.IGNORECASE,
)

# Attributes every LogRecord has; anything else came from ``extra=`` and is redacted too.
_STANDARD_RECORD_ATTRIBUTES: Final = frozenset(
    {
        "name", "msg", "args", "levelname", "levelno", "pathname", "filename", "module", "exc_info",
        "exc_text", "stack_info", "lineno", "funcName", "created", "msecs", "relativeCreated", "thread",
        "threadName", "processName", "process", "taskName", "message", "asctime",
    }
)  # fmt: skip
_MAX_DEPTH = 8
_ExcInfo = tuple[type[BaseException], BaseException, TracebackType | None] | tuple[None, None, None]


def is_sensitive_key(key: object) -> bool:
    """True for a mapping key whose value must not be logged (``password``, ``api_key``, ...)."""
    return (
        isinstance(key, str)
        and SENSITIVE_KEY_PATTERN.search(key) is not None
        and NON_SECRET_KEY_PATTERN.search(key) is None
    )


def _keep_quotes(value: str) -> str:
    if len(value) >= 2 and value[0] in "\"'" and value[-1] == value[0]:
        return f"{value[0]}{REDACTED}{value[0]}"
    return REDACTED


def _replace_value(match: re.Match[str]) -> str:
    return match.group("prefix") + _keep_quotes(match.group("value"))


def _replace_key_value(match: re.Match[str]) -> str:
    if NON_SECRET_KEY_PATTERN.search(match.group("key")):
        return match.group(0)
    return _replace_value(match)


def _safe_str(value: object, render: Callable[[object], str] = str) -> str:
    try:
        return render(value)
    except Exception as exc:  # noqa: BLE001 - a filter must not raise into the caller's logging call
        return f"<unprintable {type(value).__name__}: {type(exc).__name__}>"


class RedactingFilter(logging.Filter):
    """Rewrites records so they carry no credentials; attach it to handlers (see the module docstring)."""

    def __init__(
        self,
        secret: str | None = None,
        *,
        extra_secrets: Iterable[str] = (),
        connection_token_prefixes: Iterable[str] = (CONNECTION_TOKEN_PREFIX,),
        extra_patterns: Iterable[re.Pattern[str]] = (),
    ) -> None:
        super().__init__()
        candidates = [secret or "", *extra_secrets]
        # Longest first, so a secret that contains another is replaced whole.
        self._secrets = sorted(
            {value for value in candidates if len(value) >= MIN_REDACTED_SECRET_LENGTH}, key=len, reverse=True
        )
        self._token_patterns: list[re.Pattern[str]] = [
            CONNECTION_TOKEN_PATTERN if prefix == CONNECTION_TOKEN_PREFIX else token_prefix_pattern(prefix)
            for prefix in connection_token_prefixes
        ]
        self._extra_patterns = list(extra_patterns)
        self._exception_formatter = logging.Formatter()

    def redact(self, text: str) -> str:
        """``text`` with every secret, token and sensitive key=value replaced by ``[REDACTED]``."""
        for secret in self._secrets:
            text = text.replace(secret, REDACTED)
        text = URL_CREDENTIALS_PATTERN.sub(_replace_value, text)
        text = AUTHORIZATION_PATTERN.sub(_replace_value, text)
        text = BEARER_PATTERN.sub(_replace_value, text)
        text = JWT_PATTERN.sub(REDACTED, text)
        for pattern in self._token_patterns:
            text = pattern.sub(_replace_value, text)
        for pattern in self._extra_patterns:
            text = pattern.sub(REDACTED, text)
        text = QUOTED_KEY_VALUE_PATTERN.sub(_replace_key_value, text)
        return PLAIN_KEY_VALUE_PATTERN.sub(_replace_key_value, text)

    def scrub(self, value: object, *, redact_strings: bool = True, _depth: int = 0) -> object:
        """A copy of ``value`` with sensitive dict keys' values replaced; nested dicts/lists/tuples too.

        Only plain ``dict``, ``list`` and ``tuple`` are rebuilt (subclasses such as named tuples
        keep their own ``str``); the caller's objects are never modified.
        """
        if _depth > _MAX_DEPTH:
            return value
        if type(value) is dict:
            return {
                key: (
                    REDACTED
                    if item is not None and is_sensitive_key(key)
                    else self.scrub(item, redact_strings=redact_strings, _depth=_depth + 1)
                )
                for key, item in value.items()
            }
        if type(value) is list or type(value) is tuple:
            items = [self.scrub(item, redact_strings=redact_strings, _depth=_depth + 1) for item in value]
            return items if type(value) is list else tuple(items)
        if redact_strings and isinstance(value, str):
            return self.redact(value)
        return value

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = self.redact(self._message(record))
        record.args = ()
        if record.exc_info and not record.exc_text:
            record.exc_text = self._format_exception(record.exc_info)
        if record.exc_text:
            record.exc_text = self.redact(record.exc_text)
        if record.stack_info:
            record.stack_info = self.redact(record.stack_info)
        for name, value in list(vars(record).items()):
            if name in _STANDARD_RECORD_ATTRIBUTES or name.startswith("_"):
                continue
            if value is not None and is_sensitive_key(name):
                setattr(record, name, REDACTED)
            elif isinstance(value, str | dict | list | tuple):
                setattr(record, name, self.scrub(value))
        return True

    def _message(self, record: logging.LogRecord) -> str:
        """``record.getMessage()`` computed on scrubbed arguments, and never raising."""
        msg = self.scrub(record.msg, redact_strings=False)
        args = self.scrub(record.args, redact_strings=False) if record.args else None
        try:
            text = str(msg)
            return text % args if args else text
        except Exception as exc:  # noqa: BLE001 - reported in the line itself, never raised into the caller
            return (
                f"{_safe_str(msg)} [log message could not be formatted: {type(exc).__name__}: "
                f"{_safe_str(exc)}; args: {_safe_str(args, repr)}]"
            )

    def _format_exception(self, exc_info: _ExcInfo) -> str:
        try:
            return self._exception_formatter.formatException(exc_info)
        except Exception as exc:  # noqa: BLE001 - a filter must not raise into the caller's logging call
            return f"[exception could not be formatted: {type(exc).__name__}]"


def install_redaction(secret: str | None, logger: logging.Logger | None = None) -> RedactingFilter:
    """Attach a ``RedactingFilter`` to every handler of ``logger`` (default: the root logger).

    Idempotent: a ``RedactingFilter`` already on a handler is replaced, so calling it again
    (for example with a new secret) never stacks filters. Handlers added later are not
    covered; call this after configuring logging. Returns the filter.
    """
    target = logger if logger is not None else logging.getLogger()
    redacting = RedactingFilter(secret)
    for handler in target.handlers:
        for existing in [item for item in handler.filters if isinstance(item, RedactingFilter)]:
            handler.removeFilter(existing)
        handler.addFilter(redacting)
    return redacting
