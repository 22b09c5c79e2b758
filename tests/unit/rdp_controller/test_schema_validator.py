"""SchemaValidator: the generated schemas load and check answers; one that cannot load is reported
in /health (``components.schemas``) and its checks are off, never fatal."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from rdp_controller.main import OPENAPI_FILE
from rdp_controller.schema_validator import SchemaValidationError, SchemaValidator

SCHEMA_DIR = OPENAPI_FILE.parent


def test_the_committed_schemas_load() -> None:
    validator = SchemaValidator()
    assert validator.enabled and validator.load_errors == {}
    assert validator.health() == {"status": "loaded", "errors": {}}


def test_a_schema_that_does_not_load_is_reported_and_its_checks_are_off(tmp_path: Path) -> None:
    for name in ("session-schema.json", "metrics-schema.json"):
        shutil.copy(SCHEMA_DIR / name, tmp_path / name)
    (tmp_path / "health-schema.json").write_text("{not json", encoding="utf-8")
    validator = SchemaValidator(tmp_path)
    health = validator.health()
    assert health["status"] == "degraded"
    assert list(health["errors"]) == ["health"]  # type: ignore[call-overload]
    assert "health-schema.json" in health["errors"]["health"]  # type: ignore[index]
    assert validator.errors("health", {"anything": 1}) == []  # off, not failing every answer
    assert validator.errors("metrics", {}) != []  # the others still check


def test_a_broken_answer_is_named_with_its_path() -> None:
    validator = SchemaValidator()
    with pytest.raises(SchemaValidationError) as raised:
        validator.validate("health", {"status": "fine"})
    assert "health response breaks health-schema.json" in str(raised.value)
    assert any(error.startswith("status:") for error in raised.value.errors)
