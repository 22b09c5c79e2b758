"""SessionProcessorClient calls session-processor's contract path; an unknown session is not found."""

from __future__ import annotations

from typing import Any

import pytest

from rdp_controller.integration.errors import ServiceNotFoundError
from rdp_controller.integration.session_processor_client import SessionProcessorClient
from tests.unit.rdp_controller.integration.peer_recorder import SID, Call, Recorder, build, check_contract

CASES: list[tuple[Call, str, str, Any]] = [
    (
        lambda c: c.finalize_session(SID, idempotency_key="k"),
        "POST",
        f"/api/v1/sessions/{SID}/finalize",
        None,
    ),
]


@pytest.mark.parametrize(("call", "method", "path", "body"), CASES)
async def test_contract_paths_and_bodies(call: Call, method: str, path: str, body: Any) -> None:
    await check_contract(SessionProcessorClient, call, method, path, body)


async def test_finalize_404_is_not_found() -> None:
    client = build(SessionProcessorClient, Recorder({"detail": "unknown session"}, status=404))
    with pytest.raises(ServiceNotFoundError):
        await client.finalize_session(SID)
    await client.close()
