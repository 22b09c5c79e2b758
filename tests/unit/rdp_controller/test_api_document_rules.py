"""openapi.yaml accepts exactly what the code accepts, rule by rule.

The document is generated from the models, but a rule a validator enforces in code (a resolution
range, label keys, a drain deadline only with draining) reaches it only through the model's
``json_schema_extra``. Each test runs one corpus of inputs - the edges of the rule, what a fuzzer or
a generated client sends - through both the request schema of openapi.yaml (as JSON Schema, formats
checked) and the code's own validation, and asserts they agree on every input. A rule the document
does not express (a cursor it did not issue, a drain deadline without draining, a non-ASCII address,
a resolution beyond the limits, a label key outside the pattern, a reason for a status other than
terminated) shows up as an input one side accepts and the other refuses.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from pydantic import ValidationError

from common.errors import ValidationFailed
from rdp_controller.models import SessionConfig, StatusUpdateRequest
from rdp_controller.server_models import ServerCreate, ServerUpdate
from rdp_controller.storage.mongo import decode_cursor, encode_cursor
from tests.support.openapi import SPEC, component, validator

SOME_ID = "0b6c9c5e-4f0e-4c53-9d53-4f5f3b0e9a11"


def spec_accepts(schema: dict[str, Any], value: Any) -> bool:
    return validator(schema).is_valid(value)


def model_accepts(model: Any, value: Any) -> bool:
    try:
        model.model_validate(value)
    except ValidationError:
        return False
    return True


def disagreements(schema: dict[str, Any], model: Any, bodies: list[Any]) -> list[tuple[Any, bool, bool]]:
    found = []
    for body in bodies:
        by_spec, by_code = spec_accepts(schema, body), model_accepts(model, body)
        if by_spec != by_code:
            found.append((body, by_spec, by_code))
    return found


def test_display_resolution_limits() -> None:
    values = [f"{w}x1080" for w in range(0, 10000)] + [f"1920x{h}" for h in range(0, 10000)]
    values += [
        "7680x4320",
        "7681x4320",
        "7680x4321",
        "99999x99999",
        "0640x480",
        "640x0480",
        "\u0666\u0664\u0660x\u0664\u0668\u0660",  # Arabic-Indic digits: int() reads them
        "1920X1080",
        "1920x1080 ",
        "x1080",
        "",
    ]
    schema = component("SessionConfig")
    assert disagreements(schema, SessionConfig, [{"display_resolution": v} for v in values]) == []


ADDRESSES = [
    "10.1.2.3",
    "127.0.0.1",
    "1.2.3.4",
    "0.0.0.0",
    "255.255.255.255",
    "224.0.0.1",
    "239.255.255.255",
    "240.0.0.1",
    "223.255.255.255",
    "01.2.3.4",
    "10.0.0.01",
    "999.1.1.1",
    "1.2.3",
    "1.2.3.4.5",
    "0",
    "42",
    "::1",
    "::",
    "0::0",
    "0:0:0:0:0:0:0:0",
    "2001:db8::1",
    "::ffff:10.1.2.3",
    "ff02::1",
    "FF05::2",
    "ff0::1",
    "fe80::1%eth0",
    "fe80::1%\u00e9",
    "rdp-host",
    "RDP-Host.Example.COM",
    "xrdp1.lan",
    "a",
    "a" * 63,
    "a" * 64,
    ".".join(["a" * 50] * 5),
    "host.123",
    "123.host",
    "123abc",
    "-host",
    "host-",
    "host_name",
    "host..name",
    "host.",
    "h\u00f4te.example",
    "\uff48\uff4f\uff53\uff54",
    "xn--bcher-kva.example",
    "host name",
    "host/path",
    "",
]


def test_server_address() -> None:
    bodies = [{"name": "srv", "address": address} for address in ADDRESSES]
    assert disagreements(component("ServerCreate"), ServerCreate, bodies) == []


LABEL_KEYS = [
    "zone",
    "Zone-1",
    "gpu.vendor",
    "a_b",
    "0",
    "a" * 63,
    "a" * 64,
    "_x",
    ".x",
    "-x",
    "$where",
    "a b",
    "k\u00e9y",
    "a:b",
    "a/b",
    "",
]


@pytest.mark.parametrize(
    ("schema", "model", "wrap"),
    [
        (component("SessionConfig"), SessionConfig, lambda labels: {"labels": labels}),
        (
            component("ServerCreate"),
            ServerCreate,
            lambda labels: {"name": "s", "address": "h", "labels": labels},
        ),
        (component("ServerUpdate"), ServerUpdate, lambda labels: {"labels": labels}),
    ],
)
def test_label_keys(schema: dict[str, Any], model: Any, wrap: Any) -> None:
    bodies = [wrap({key: "v"}) for key in LABEL_KEYS] + [wrap({f"k{i}": "v" for i in range(33)})]
    assert disagreements(schema, model, bodies) == []


def test_drain_deadline_only_with_draining_true() -> None:
    bodies: list[dict[str, Any]] = []
    for draining in ("absent", None, True, False):
        for deadline in ("absent", None, 0, 600):
            body: dict[str, Any] = {}
            if draining != "absent":
                body["draining"] = draining
            if deadline != "absent":
                body["drain_deadline_seconds"] = deadline
            bodies.append(body)
    found = disagreements(component("ServerUpdate"), ServerUpdate, bodies)
    assert found == []
    assert not spec_accepts(component("ServerUpdate"), {"draining": None, "drain_deadline_seconds": 60})
    assert spec_accepts(component("ServerUpdate"), {"draining": True, "drain_deadline_seconds": 60})


CONTROLLER_ONLY = {"creating", "ready", "error"}


def test_status_update_reason_fits_the_target() -> None:
    statuses = ["creating", "ready", "active", "idle", "suspended", "terminated", "error", "gone"]
    reasons: list[Any] = ["absent", None, "admin", "user_request", "server_unhealthy", "nonsense"]
    for status in statuses:
        for reason in reasons:
            body: dict[str, Any] = {"status": status}
            if reason != "absent":
                body["reason"] = reason
            by_spec = spec_accepts(component("StatusUpdateRequest"), body)
            # creating/ready/error pass the model and are refused by the controller (409): the
            # document lists only the targets a caller may ask for.
            by_code = model_accepts(StatusUpdateRequest, body) and status not in CONTROLLER_ONLY
            assert by_spec == by_code, (body, by_spec, by_code)


def cursor_schema() -> dict[str, Any]:
    parameters = SPEC["paths"]["/api/v1/sessions"]["get"]["parameters"]
    schema: dict[str, Any] = next(p["schema"] for p in parameters if p["name"] == "cursor")
    return schema


def code_accepts_cursor(cursor: str) -> bool:
    """What ``SessionRepository.page`` does with it: an empty cursor is the first page."""
    if cursor == "":
        return True
    try:
        decode_cursor(cursor)
    except ValidationFailed:
        return False
    return True


def test_cursor_format() -> None:
    issued = encode_cursor(datetime(2026, 11, 30, 19, 33, 27, 865000, tzinfo=UTC), SOME_ID)
    assert decode_cursor(issued) == (datetime(2026, 11, 30, 19, 33, 27, 865000, tzinfo=UTC), SOME_ID)
    cursors = [
        issued,
        f"0.{SOME_ID}",
        f"{'9' * 17}.{SOME_ID}",
        f"{'9' * 18}.{SOME_ID}",
        f".{SOME_ID}",
        f"-1.{SOME_ID}",
        f"1.{SOME_ID.upper()}",
        f"1.{SOME_ID}x",
        f"1{SOME_ID}",
        "1.not-a-session",
        "0" * 400,
        "WyIyMDI2LTExLTMwVDE5OjMzOjI3Ljg2NSIsICJ4Il0",  # the former base64 form
        f"\u0661.{SOME_ID}",
        "",
    ]
    for cursor in cursors:
        assert spec_accepts(cursor_schema(), cursor) == code_accepts_cursor(cursor), cursor
