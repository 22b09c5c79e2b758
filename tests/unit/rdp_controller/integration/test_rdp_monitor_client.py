"""RdpMonitorClient calls rdp-monitor's contract paths with its bodies."""

from __future__ import annotations

from typing import Any

import pytest

from rdp_controller.integration.rdp_monitor_client import RdpMonitorClient
from tests.unit.rdp_controller.integration.peer_recorder import SID, Call, check_contract

CASES: list[tuple[Call, str, str, Any]] = [
    (
        lambda c: c.start_monitoring(SID, session_config={"color_depth": 24}, idempotency_key="k"),
        "POST",
        "/api/v1/monitoring/start",
        {"session_id": SID, "session_config": {"color_depth": 24}},
    ),
    (
        lambda c: c.stop_monitoring(SID, idempotency_key="k"),
        "POST",
        f"/api/v1/monitoring/sessions/{SID}/stop",
        None,
    ),
    (lambda c: c.get_session_metrics(SID), "GET", f"/api/v1/monitoring/sessions/{SID}/metrics", None),
]


@pytest.mark.parametrize(("call", "method", "path", "body"), CASES)
async def test_contract_paths_and_bodies(call: Call, method: str, path: str, body: Any) -> None:
    await check_contract(RdpMonitorClient, call, method, path, body)
