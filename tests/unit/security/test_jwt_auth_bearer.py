"""parse_bearer: the token of an ``Authorization: Bearer`` header; any other header is an
Unauthorized that does not echo what it was given."""

from __future__ import annotations

import pytest

from common.errors import Unauthorized
from security.jwt_auth import parse_bearer


@pytest.mark.parametrize(
    "header", ["Bearer abc.def.ghi", "bearer abc.def.ghi", "BEARER abc.def.ghi", "  Bearer \t abc.def.ghi  "]
)
def test_parse_bearer(header: str) -> None:
    assert parse_bearer(header) == "abc.def.ghi"


@pytest.mark.parametrize("header", [None, "", "   "])
def test_parse_bearer_missing(header: str | None) -> None:
    with pytest.raises(Unauthorized, match="missing bearer token"):
        parse_bearer(header)


@pytest.mark.parametrize(
    "header", ["Basic dXNlcjpzZWNyZXQ=", "Token dXNlcjpzZWNyZXQ=", "Digest dXNlcjpzZWNyZXQ="]
)
def test_parse_bearer_other_scheme(header: str) -> None:
    with pytest.raises(Unauthorized, match="only 'Bearer <token>'") as caught:
        parse_bearer(header)
    assert "dXNlcjpzZWNyZXQ" not in caught.value.message


@pytest.mark.parametrize(
    "header", ["Bearer", "Bearer   ", "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhIn0.c2ln", "Bearer two tokens"]
)
def test_parse_bearer_malformed(header: str) -> None:
    with pytest.raises(Unauthorized, match="Authorization header") as caught:
        parse_bearer(header)
    assert "eyJ" not in caught.value.message
    assert "tokens" not in caught.value.message
