"""``openapi.yaml`` as JSON Schema: validators for the tests that hold answers and inputs against it.

The document is OpenAPI 3.0.3 (see ``api_document.py``); its schema objects become JSON Schema
2020-12: ``nullable`` a null alternative, a boolean ``exclusiveMinimum`` a number, references into
``$defs``.
"""

from __future__ import annotations

from typing import Any

import yaml
from jsonschema import Draft202012Validator

from rdp_controller.main import OPENAPI_FILE

SPEC: dict[str, Any] = yaml.safe_load(OPENAPI_FILE.read_text(encoding="utf-8"))


def as_json_schema(node: Any) -> Any:
    """An OpenAPI 3.0 schema object of the document as JSON Schema 2020-12."""
    if isinstance(node, list):
        return [as_json_schema(item) for item in node]
    if not isinstance(node, dict):
        return node
    out = {key: as_json_schema(value) for key, value in node.items() if key != "nullable"}
    if isinstance(out.get("$ref"), str):
        out["$ref"] = out["$ref"].replace("#/components/schemas/", "#/$defs/")
    if node.get("exclusiveMinimum") is True:
        out["exclusiveMinimum"] = out.pop("minimum")
    if node.get("nullable") is True:
        return {"anyOf": [out, {"type": "null"}]}
    return out


DEFINITIONS = as_json_schema(SPEC["components"]["schemas"])


def component(name: str) -> dict[str, Any]:
    """A reference to ``components/schemas/<name>``, as an operation would write it."""
    return {"$ref": f"#/components/schemas/{name}"}


def validator(schema: dict[str, Any]) -> Draft202012Validator:
    """A validator (formats checked) of a schema of the document, e.g. ``component("Session")``."""
    return Draft202012Validator(
        {"$defs": DEFINITIONS, **as_json_schema(schema)}, format_checker=Draft202012Validator.FORMAT_CHECKER
    )


def violations(name: str, body: Any) -> list[str]:
    """Every way ``body`` breaks ``components/schemas/<name>``."""
    return [
        f"{'/'.join(map(str, error.absolute_path))}: {error.message}"
        for error in validator(component(name)).iter_errors(body)
    ]
