"""Log redaction's handling of a record: formatted once and its args cleared, odd records that
cannot be formatted, a filter that runs twice."""

from __future__ import annotations

import pytest

from security.redaction import REDACTED
from tests.unit.security.redacted_logger import JWT, SECRET, Captured, assert_clean


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
