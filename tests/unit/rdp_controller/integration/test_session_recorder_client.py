"""SessionRecorderClient calls session-recorder's contract paths with its bodies."""

from __future__ import annotations

from typing import Any

import pytest

from rdp_controller.integration.session_recorder_client import SessionRecorderClient
from tests.unit.rdp_controller.integration.peer_recorder import SID, Call, check_contract

CASES: list[tuple[Call, str, str, Any]] = [
    (
        lambda c: c.start_recording(SID, owner_address="alice", metadata={"a": 1}, idempotency_key="k"),
        "POST",
        "/recordings/start",
        {"session_id": SID, "owner_address": "alice", "metadata": {"a": 1}},
    ),
    (lambda c: c.stop_recording(SID, idempotency_key="k"), "POST", f"/recordings/{SID}/stop", None),
    (lambda c: c.get_recording(SID), "GET", f"/recordings/{SID}", None),
]


@pytest.mark.parametrize(("call", "method", "path", "body"), CASES)
async def test_contract_paths_and_bodies(call: Call, method: str, path: str, body: Any) -> None:
    await check_contract(SessionRecorderClient, call, method, path, body)
