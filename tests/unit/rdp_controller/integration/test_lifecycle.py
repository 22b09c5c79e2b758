"""Lifecycle hooks: which deliveries each transition queues, and that a hook never fails the lifecycle."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, cast

import pytest
from pymongo.errors import ServerSelectionTimeoutError

from rdp_controller.integration.lifecycle import IntegrationHooks, plan_deliveries
from rdp_controller.integration.outbox import Outbox
from rdp_controller.metrics import Metrics
from rdp_controller.models import SessionStatus as S

SID = "5f0c8a9e-0a43-4c1e-9b0e-3f8f5b0d2a11"
SERVER = "0d3e4f5a-0a43-4c1e-9b0e-3f8f5b0d2a11"
STARTED = datetime(2025, 1, 1, 12, 0, tzinfo=UTC)


def session(**changes: Any) -> dict[str, Any]:
    return {
        "session_id": SID,
        "user_id": "alice",
        "server_id": SERVER,
        "connection_id": "c-1",
        "status": "active",
        "session_config": {"display_resolution": "1920x1080", "color_depth": 24, "dedicated_server": False},
        "started_at": STARTED,
        **changes,
    }


def ops(planned: list[Any]) -> list[tuple[str, str]]:
    return [(d.peer, d.operation) for d in planned]


def test_first_activation_starts_recording_and_monitoring() -> None:
    planned = plan_deliveries(session(), S.READY, S.ACTIVE)
    assert ops(planned) == [("session_recorder", "start_recording"), ("rdp_monitor", "start_monitoring")]
    recorder, monitor = planned
    assert recorder.delivery_id == f"{SID}:session_recorder:start_recording"
    assert recorder.order_key == f"{SID}:session_recorder"
    assert recorder.payload["owner_address"] == "alice"
    assert recorder.payload["metadata"]["started_at"] == STARTED.isoformat()
    assert monitor.payload == {"session_id": SID, "session_config": session()["session_config"]}


@pytest.mark.parametrize(
    ("before", "after"), [(S.IDLE, S.ACTIVE), (S.SUSPENDED, S.ACTIVE), (S.ACTIVE, S.IDLE)]
)
def test_other_moves_queue_nothing(before: S, after: S) -> None:
    assert plan_deliveries(session(), before, after) == []


def test_termination_after_a_connect_stops_and_finalizes() -> None:
    planned = plan_deliveries(session(status="terminated"), S.ACTIVE, S.TERMINATED)
    assert ops(planned) == [
        ("session_recorder", "stop_recording"),
        ("rdp_monitor", "stop_monitoring"),
        ("session_processor", "finalize_session"),
    ]
    assert planned[2].delivery_id == f"{SID}:session_processor:finalize_session"


def test_termination_of_a_session_that_never_connected_queues_nothing() -> None:
    assert plan_deliveries(session(started_at=None), S.READY, S.TERMINATED) == []


def test_dedicated_server_is_released_when_the_session_ends() -> None:
    config = {"display_resolution": "1920x1080", "color_depth": 24, "dedicated_server": True}
    planned = plan_deliveries(session(session_config=config, started_at=None), S.READY, S.TERMINATED)
    assert ops(planned) == [("rdp_server_manager", "release_dedicated_server")]
    assert planned[0].payload == {"server_id": SERVER, "session_id": SID}


class FakeOutbox:
    def __init__(self, *, fail: bool = False, configured: bool = True) -> None:
        self.operations = {
            ("session_recorder", "start_recording"): None,
            ("rdp_monitor", "start_monitoring"): None,
        }
        self.fail = fail
        self.configured = configured
        self.enqueued: list[tuple[str, str, str]] = []
        self.kicked: list[str | None] = []

    async def enqueue(
        self,
        peer: str,
        operation: str,
        payload: dict[str, Any],
        *,
        delivery_id: str,
        order_key: str | None = None,
    ) -> bool:
        if self.fail:
            raise ServerSelectionTimeoutError("mongo down")
        self.enqueued.append((peer, operation, delivery_id))
        return self.configured

    def kick(self, peer: str | None = None) -> None:
        self.kicked.append(peer)


async def test_hooks_enqueue_and_kick_each_peer_once() -> None:
    outbox = FakeOutbox()
    hooks = IntegrationHooks(cast(Outbox, outbox), metrics=Metrics())
    await hooks.on_transition(session(), S.READY, S.ACTIVE, "client_connected")
    assert [e[:2] for e in outbox.enqueued] == [
        ("session_recorder", "start_recording"),
        ("rdp_monitor", "start_monitoring"),
    ]
    assert outbox.kicked == ["rdp_monitor", "session_recorder"]


async def test_hooks_do_not_kick_when_nothing_was_stored() -> None:
    outbox = FakeOutbox(configured=False)
    await IntegrationHooks(cast(Outbox, outbox), metrics=Metrics()).on_transition(
        session(), S.READY, S.ACTIVE, None
    )
    assert outbox.kicked == []


async def test_hooks_skip_operations_without_a_handler() -> None:
    outbox = FakeOutbox()
    config = {"dedicated_server": True}
    hooks = IntegrationHooks(cast(Outbox, outbox), metrics=Metrics())
    await hooks.on_transition(session(session_config=config, started_at=None), S.READY, S.TERMINATED, "admin")
    assert outbox.enqueued == []


async def test_a_mongo_failure_is_counted_not_raised() -> None:
    metrics = Metrics()
    hooks = IntegrationHooks(cast(Outbox, FakeOutbox(fail=True)), metrics=metrics)
    await hooks.on_transition(session(), S.READY, S.ACTIVE, None)
    assert metrics.by_label("outbox_enqueue_failures") == {"session_recorder": 1, "rdp_monitor": 1}
