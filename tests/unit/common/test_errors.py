"""One registry of error codes: each code has one status, the document lists them all, and the
service raises no code outside it."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from common.errors import STATUS, Conflict, ErrorCode, NoCapacity, error_body

ROOT = Path(__file__).resolve().parents[3]
RAISED_CODE = re.compile(r'code\s*=\s*"([A-Z_]+)"')


def test_every_code_has_one_status() -> None:
    assert set(STATUS) == set(ErrorCode)


def test_the_openapi_document_lists_every_code_with_its_status() -> None:
    document = yaml.safe_load((ROOT / "rdp-controller" / "openapi.yaml").read_text(encoding="utf-8"))
    schema = document["components"]["schemas"]["ErrorCode"]
    assert schema["enum"] == [code.value for code in ErrorCode]
    assert schema["x-status"] == {code.value: status for code, status in STATUS.items()}
    schemas = document["components"]["schemas"]
    assert schemas["ErrorBody"]["properties"]["error"] == {"$ref": "#/components/schemas/ErrorDetail"}
    assert schemas["ErrorDetail"]["properties"]["code"] == {"$ref": "#/components/schemas/ErrorCode"}


def test_the_code_decides_the_status_whichever_class_raises_it() -> None:
    assert NoCapacity("x", code="DEDICATED_UNAVAILABLE").status_code == 503
    assert Conflict("x", code="INVALID_TRANSITION").status_code == 409
    with pytest.raises(ValueError):
        Conflict("x", code="NOT_A_REGISTERED_CODE")


def test_the_source_raises_registered_codes_only() -> None:
    used = {
        match.group(1)
        for folder in ("rdp-controller", "common", "security")
        for path in (ROOT / folder).rglob("*.py")
        for match in RAISED_CODE.finditer(path.read_text(encoding="utf-8"))
    }
    assert used and used <= {code.value for code in ErrorCode}, sorted(used - set(ErrorCode))


def test_one_error_body() -> None:
    assert error_body(ErrorCode.NOT_FOUND, "gone") == {
        "error": {"code": "NOT_FOUND", "message": "gone", "details": {}}
    }
