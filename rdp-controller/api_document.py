"""The OpenAPI document and the JSON schemas, generated from the routes and the models.

The models (``models.py``, ``server_models.py``, ``connection_models.py``, ``system_models.py``,
``common.errors.ErrorBody``) are the one source of every shape. ``make openapi`` runs
``python -m rdp_controller.api_document``, which writes beside this file:

* ``openapi.yaml``: FastAPI's document of ``routes.ROUTERS``, with what FastAPI cannot know added
  here (the API's description, the bearer scheme, the status of each error code), written as
  OpenAPI 3.0.3 (``as_openapi_30``). 3.0 on purpose: its ``integer`` is a number written without a
  fraction, as the API takes it (``24.0`` is refused), where 3.1's JSON Schema counts ``24.0`` an
  integer, so a 3.1 document would promise what the API refuses;
* ``session-schema.json``, ``health-schema.json``, ``metrics-schema.json``: the JSON schemas the
  template asks for (draft 7, ``definitions``), which ``SchemaValidator`` checks answers against.

``--check`` writes nothing and exits 1 when a committed file differs from what the code generates;
``tests/unit/rdp_controller/test_api_document.py`` does the same, so the files cannot drift.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import yaml
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from common.errors import STATUS

from . import __version__
from .models import (
    ConnectionDescriptor,
    Session,
    SessionEventList,
    SessionHealth,
    SessionMetrics,
    SessionPage,
)
from .routes import ROUTERS
from .system_models import Health, Metrics

HERE = Path(__file__).parent
TITLE = "Lucid RDP Controller"
SCHEMA_ID = "https://lucid.local/schemas/rdp-controller/"
DESCRIPTION = """\
RDP session controller and connection broker for a pool of RDP hosts (xrdp or Windows).
Sessions are placed on healthy hosts with free capacity, tracked through their life
(creating -> ready -> active <-> idle -> suspended -> terminated), and time-limited.
Limits hold across replicas (MongoDB is the source of truth, Redis coordinates).

Every error has the body `{"error": {"code", "message", "details"}}`; `ErrorCode` lists every code
with its one HTTP status (`x-status`).
Every route but `/health` and `/metrics` needs a bearer JWT (HS256, audience `rdp-controller`)
whose `roles` claim holds `user`, `operator` and/or `service`; a missing or bad token is a 401
with `WWW-Authenticate: Bearer`. A `user` sees its own sessions only: another user's session is
a 404, exactly like one that does not exist. Requests are rate limited per principal (429 with
`Retry-After`).

Request bodies are JSON objects of exactly the documented fields and JSON types: unknown fields
and values of another type (`"true"` for a boolean, `"24"` or `24.0` for an integer) are refused
with 422, whose message names the field (`body` for JSON that does not parse). A body over the
configured size limit is refused with 413 before it is read, on any route. A refused request
writes nothing.

`OPTIONS` on any path of this document answers 204 (no body, no token needed) with an `Allow`
header listing every method the path serves, `OPTIONS` included. A method a path does not serve
is a 405 `METHOD_NOT_ALLOWED` with the same `Allow` (and `details.allowed`). `OPTIONS` is not
listed as an operation of each path: it is the same for all of them.
"""
TAGS = ["system", "sessions", "servers", "connections"]
ERROR_RESPONSE_NAMES = {
    401: "Unauthorized",
    403: "Forbidden",
    404: "NotFound",
    409: "Conflict",
    413: "PayloadTooLarge",
    422: "ValidationError",
    429: "RateLimited",
    503: "Unavailable",
}

#: The JSON schema files: name -> (root model, the other models it defines, title).
JSON_SCHEMAS: dict[str, tuple[type[BaseModel], tuple[type[BaseModel], ...], str]] = {
    "session-schema.json": (
        Session,
        (SessionPage, ConnectionDescriptor, SessionEventList, SessionMetrics, SessionHealth),
        "RDP controller sessions",
    ),
    "health-schema.json": (Health, (), "RDP controller health"),
    "metrics-schema.json": (Metrics, (), "RDP controller metrics"),
}


def openapi_document() -> dict[str, Any]:
    """The OpenAPI document of the routes, as ``openapi.yaml`` holds it."""
    routes = [route for router in ROUTERS for route in router.routes]
    document = get_openapi(
        title=TITLE,
        version=__version__,
        openapi_version="3.0.3",
        description=DESCRIPTION,
        routes=routes,
        servers=[{"url": "http://rdp-controller:8092"}],
        tags=[{"name": name} for name in TAGS],
    )
    document["security"] = [{"bearerAuth": []}]
    components = document["components"]
    components["securitySchemes"] = {
        "bearerAuth": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}
    }
    components["schemas"]["ErrorCode"]["x-status"] = {str(code): status for code, status in STATUS.items()}
    components["responses"] = shared_error_responses(document)
    converted: dict[str, Any] = as_openapi_30(tidy(document))
    for item in converted["paths"].values():
        for operation in item.values():
            for parameter in operation.get("parameters", []):
                parameter["schema"].pop("nullable", None)  # an absent parameter is not null
    return converted


def as_openapi_30(node: Any) -> Any:
    """Pydantic's JSON Schema (2020-12) as OpenAPI 3.0 schema objects: ``nullable`` for a null
    alternative, boolean ``exclusiveMinimum``, ``enum`` for ``const``, and ``allOf`` around a
    ``$ref`` with siblings (3.0 ignores them). ``propertyNames`` and ``patternProperties`` stay:
    JSON Schema tools read them, and the description says the rule for the others."""
    if isinstance(node, list):
        return [as_openapi_30(item) for item in node]
    if not isinstance(node, dict):
        return node
    out = {key: as_openapi_30(value) for key, value in node.items()}
    options = out.get("anyOf")
    if isinstance(options, list) and {"type": "null"} in options:
        rest = [option for option in options if option != {"type": "null"}]
        del out["anyOf"]
        if len(rest) == 1:
            out = {**out, **(_ref_as_all_of(rest[0]) if "$ref" in rest[0] else rest[0])}
        else:
            out["anyOf"] = rest
        out["nullable"] = True
    if isinstance(out.get("exclusiveMinimum"), int | float) and not isinstance(out["exclusiveMinimum"], bool):
        out["minimum"], out["exclusiveMinimum"] = out["exclusiveMinimum"], True
    if "const" in out:
        out["enum"] = [out.pop("const")]
    if "$ref" in out and len(out) > 1:
        out = _ref_as_all_of(out)
    return out


def _ref_as_all_of(schema: dict[str, Any]) -> dict[str, Any]:
    siblings = {key: value for key, value in schema.items() if key != "$ref"}
    return {"allOf": [{"$ref": schema["$ref"]}], **siblings}


def shared_error_responses(document: dict[str, Any]) -> dict[str, Any]:
    """Each error answer once, in ``components/responses``; the operations refer to it by name."""
    shared: dict[str, Any] = {}
    for item in document["paths"].values():
        for operation in item.values():
            for status, response in operation["responses"].items():
                name = ERROR_RESPONSE_NAMES.get(int(status))
                if name is None or _body_schema(response) != {"$ref": "#/components/schemas/ErrorBody"}:
                    continue
                # FastAPI gives an error answer its route's media type (application/x-rdp for the
                # .rdp file); errors are JSON on every route.
                response["content"] = {"application/json": {"schema": _body_schema(response)}}
                if shared.setdefault(name, response) != response:
                    raise ValueError(f"two different {status} answers: say them once, in routes/responses.py")
                operation["responses"][status] = {"$ref": f"#/components/responses/{name}"}
    return dict(sorted(shared.items(), key=lambda pair: list(ERROR_RESPONSE_NAMES.values()).index(pair[0])))


def _body_schema(response: dict[str, Any]) -> Any:
    """The schema of the answer's body, whatever its media type (an answer here has one)."""
    media: dict[str, Any] = next(iter(response.get("content", {}).values()), {})
    return media.get("schema")


def json_schemas() -> dict[str, dict[str, Any]]:
    """The JSON schema files (draft 7): each a root model, with every model it uses in ``definitions``."""
    files = {}
    for filename, (root, others, title) in JSON_SCHEMAS.items():
        _, top = models_json_schema(
            [(model, "serialization") for model in (root, *others)], ref_template="#/definitions/{model}"
        )
        files[filename] = tidy(
            {
                "$schema": "http://json-schema.org/draft-07/schema#",
                "$id": SCHEMA_ID + filename,
                "title": title,
                "$ref": f"#/definitions/{root.__name__}",
                "definitions": top["$defs"],
            }
        )
    return files


NUMBER_KEYWORDS = {"minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf"}


def tidy(node: Any, parent: str = "") -> Any:
    """Without pydantic's generated titles, ``default: null`` on a field that is never null, or ``1.0``
    for a bound of ``1``."""
    if isinstance(node, list):
        return [tidy(item) for item in node]
    if not isinstance(node, dict):
        return node
    out = {key: tidy(value, key) for key, value in node.items()}
    if isinstance(out.get("title"), str) and parent != "info" and "$schema" not in out:
        out.pop("title")
    if "default" in out and out["default"] is None and not _allows_null(out):
        out.pop("default")
    for key in NUMBER_KEYWORDS & out.keys():  # FastAPI's document model stores every bound as a float
        if isinstance(out[key], float) and out[key].is_integer():
            out[key] = int(out[key])
    return out


def _allows_null(schema: dict[str, Any]) -> bool:
    return (
        any(option.get("type") == "null" for option in schema.get("anyOf", []))
        or schema.get("type") == "null"
    )


class _Dumper(yaml.SafeDumper):
    """YAML with the multi-line texts (descriptions) as literal blocks, as a person would write them."""


def _text(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _text)


def rendered() -> dict[str, str]:
    """Every generated file's text, by file name."""
    yaml_text = yaml.dump(openapi_document(), Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=100)
    files = {
        "openapi.yaml": "# Generated by make openapi (rdp_controller/api_document.py): edit the models.\n"
        + yaml_text
    }
    for filename, schema in json_schemas().items():
        files[filename] = json.dumps(schema, indent=2, ensure_ascii=False) + "\n"
    return files


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Write openapi.yaml and the JSON schemas from the models.")
    parser.add_argument("--check", action="store_true", help="write nothing; exit 1 if a file differs")
    parser.add_argument(
        "--directory", type=Path, default=HERE, help="where the files are (default: beside this)"
    )
    args = parser.parse_args(argv)
    stale = []
    for filename, text in rendered().items():
        path = args.directory / filename
        current = path.read_text(encoding="utf-8") if path.exists() else None
        if current == text:
            continue
        stale.append(filename)
        if not args.check:
            path.write_text(text, encoding="utf-8")
            print(f"api_document: wrote {path}")
    if args.check and stale:
        print(f"api_document: differ from the code: {', '.join(stale)} (run make openapi)", file=sys.stderr)
        return 1
    if not stale:
        print("api_document: every file is up to date")
    return 0


if __name__ == "__main__":
    sys.exit(main())
