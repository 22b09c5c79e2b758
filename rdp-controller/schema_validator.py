"""
RDP Controller schema validation.

The JSON schemas beside this file describe what the service answers. Validators are built
once (with format checking): one per schema at start-up, one per definition the first time it is
asked for, then kept on app state. A response that breaks its schema is logged and counted, never
refused: the schema is a check on us, not on the caller (graceful degradation, template section 9).

Checking every response costs about a millisecond of CPU per session body, more than the rest of
the request, so ``check_response`` checks only when ``check_responses`` is on
(``RDP_CONTROLLER_VALIDATE_RESPONSES``): the test suite turns it on and fails a test whose app
answered a body that breaks its schema; production leaves it off. ``validate`` always checks.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from jsonschema import Draft7Validator
from jsonschema.exceptions import SchemaError

logger = logging.getLogger(__name__)

SCHEMA_FILES: Mapping[str, str] = {
    "health": "health-schema.json",
    "session": "session-schema.json",
    "metrics": "metrics-schema.json",
}


class SchemaValidationError(Exception):
    """A document broke its schema; ``errors`` lists every violation."""

    def __init__(self, message: str, errors: list[str] | None = None):
        super().__init__(message)
        self.errors = errors or []


class SchemaValidator:
    """Validators for the service's schemas, built once."""

    def __init__(self, schema_dir: Path | None = None, *, check_responses: bool = True):
        self.schema_dir = schema_dir or Path(__file__).parent
        self.check_responses = check_responses
        self.schemas: dict[str, dict[str, Any]] = {}
        self._validators: dict[str, Draft7Validator] = {}
        self._definition_validators: dict[tuple[str, str], Draft7Validator] = {}
        self.failures = 0
        self.failure_messages: list[str] = []  # the first few, for a test to show
        self.on_failure: Callable[[], None] | None = None  # counts it (metrics, every worker)
        self.load_errors: dict[str, str] = {}
        for name, filename in SCHEMA_FILES.items():
            self._load(name, self.schema_dir / filename)

    @property
    def enabled(self) -> bool:
        return bool(self._validators)

    def health(self) -> dict[str, object]:
        """``components.schemas`` of ``/health``: ``degraded`` when a schema did not load (its checks
        are off)."""
        return {"status": "degraded" if self.load_errors else "loaded", "errors": dict(self.load_errors)}

    def _load(self, name: str, path: Path) -> None:
        try:
            schema = json.loads(path.read_text(encoding="utf-8"))
            Draft7Validator.check_schema(schema)
        except (OSError, json.JSONDecodeError, SchemaError) as exc:
            self.load_errors[name] = f"{path.name}: {exc}"
            logger.warning("Schema %s unavailable, validation of %s responses is off: %s", path, name, exc)
            return
        self.schemas[name] = schema
        self._validators[name] = Draft7Validator(schema, format_checker=Draft7Validator.FORMAT_CHECKER)

    def errors(self, name: str, data: Any, *, definition: str | None = None) -> list[str]:
        """Every violation of ``data`` against schema ``name`` (or one of its ``definitions``)."""
        validator = self._validators.get(name)
        if validator is None:
            return []
        if definition is not None:
            validator = self._definition_validator(name, definition)
        return [
            f"{'/'.join(str(p) for p in error.absolute_path) or '(root)'}: {error.message}"
            for error in validator.iter_errors(data)
        ]

    def _definition_validator(self, name: str, definition: str) -> Draft7Validator:
        """The validator of ``definitions/<definition>`` of schema ``name``, built on first use only."""
        validator = self._definition_validators.get((name, definition))
        if validator is None:
            schema = {**self.schemas[name], "$ref": f"#/definitions/{definition}"}
            validator = Draft7Validator(schema, format_checker=Draft7Validator.FORMAT_CHECKER)
            self._definition_validators[(name, definition)] = validator
        return validator

    def validate(self, name: str, data: Any, *, definition: str | None = None) -> None:
        """Raise ``SchemaValidationError`` when ``data`` breaks schema ``name``."""
        found = self.errors(name, data, definition=definition)
        if found:
            raise SchemaValidationError(f"{name} response breaks {SCHEMA_FILES[name]}: {found[0]}", found)

    def check_response(self, name: str, data: Any, *, definition: str | None = None) -> None:
        """When ``check_responses`` is on: validate, and log and count a failure; never raises."""
        if not self.check_responses:
            return
        try:
            self.validate(name, data, definition=definition)
        except SchemaValidationError as exc:
            self.failures += 1
            if len(self.failure_messages) < 10:
                self.failure_messages.append(str(exc))
            if self.on_failure is not None:
                self.on_failure()
            logger.warning("Schema validation failed: %s", exc)

    def validate_health_response(self, data: dict[str, Any]) -> None:
        """Template name for the health check (``check_response('health', ...)``)."""
        self.check_response("health", data)
