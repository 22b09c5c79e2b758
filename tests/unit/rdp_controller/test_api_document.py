"""openapi.yaml and the JSON schemas are what the models generate; the app serves that document,
and it describes exactly the routes the app has."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
import yaml
from fastapi.openapi.utils import get_openapi

from rdp_controller import api_document
from rdp_controller.config import RdpControllerSettings
from rdp_controller.main import OPENAPI_FILE, create_app

SPEC = yaml.safe_load(Path(OPENAPI_FILE).read_text(encoding="utf-8"))
METHODS = {"get", "put", "post", "delete", "patch"}


def app_routes() -> set[tuple[str, str]]:
    """The operations the code serves, as FastAPI itself would document them."""
    settings = RdpControllerSettings(LUCID_ENV="test", MONGODB_URL="mongodb://db:1", REDIS_URL="redis://r:1")
    app = create_app(settings)
    generated = get_openapi(title=app.title, version=app.version, routes=app.routes)
    return {
        (path, method) for path, item in generated["paths"].items() for method in item if method in METHODS
    }


def spec_routes() -> set[tuple[str, str]]:
    return {(path, method) for path, item in SPEC["paths"].items() for method in item if method in METHODS}


@pytest.mark.parametrize("filename", sorted(api_document.rendered()))
def test_committed_file_is_what_the_models_generate(filename: str) -> None:
    committed = (OPENAPI_FILE.parent / filename).read_text(encoding="utf-8")
    assert committed == api_document.rendered()[filename], f"{filename} is stale: run make openapi"


def test_check_mode_names_a_stale_file_and_writes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for filename, text in api_document.rendered().items():
        (tmp_path / filename).write_text(text, encoding="utf-8")
    assert api_document.main(["--check", "--directory", str(tmp_path)]) == 0
    (tmp_path / "health-schema.json").write_text("{}", encoding="utf-8")
    assert api_document.main(["--check", "--directory", str(tmp_path)]) == 1
    assert "health-schema.json" in capsys.readouterr().err
    assert (tmp_path / "health-schema.json").read_text(encoding="utf-8") == "{}"
    assert api_document.main(["--directory", str(tmp_path)]) == 0
    assert (tmp_path / "health-schema.json").read_text(encoding="utf-8") == api_document.rendered()[
        "health-schema.json"
    ]


async def test_served_document_is_openapi_yaml() -> None:
    settings = RdpControllerSettings(LUCID_ENV="test", MONGODB_URL="mongodb://db:1", REDIS_URL="redis://r:1")
    app = create_app(settings)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
        served = (await client.get("/openapi.json")).json()
        docs = await client.get("/docs")
    assert served == SPEC
    assert docs.status_code == 200 and "/openapi.json" in docs.text


def test_every_route_is_in_the_spec_and_every_spec_path_is_served() -> None:
    assert app_routes() == spec_routes()


@pytest.mark.parametrize(("path", "method"), sorted(spec_routes()))
def test_each_operation_documents_its_success_and_errors(path: str, method: str) -> None:
    operation = SPEC["paths"][path][method]
    responses = set(operation["responses"])
    assert any(code.startswith("2") for code in responses), f"{method.upper()} {path}: no success response"
    if path.startswith("/api/"):
        assert "401" in responses, f"{method.upper()} {path}: 401 not documented"
        assert "429" in responses, f"{method.upper()} {path}: 429 not documented"
        if "{" in path or operation.get("requestBody") or operation.get("parameters"):
            assert "422" in responses, f"{method.upper()} {path}: 422 not documented"
    assert operation.get("operationId"), f"{method.upper()} {path}: no operationId"
