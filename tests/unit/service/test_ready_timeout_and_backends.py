"""The ready deadline, the reaper's choice of reason, and the MongoDB client's operation timeout."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from common.backends import create_mongo_client
from rdp_controller.models import TerminationReason
from rdp_controller.session_maintenance import due_reason
from rdp_controller.session_states import ready_deadline

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def session(status: str, **fields: object) -> dict[str, object]:
    return {"status": status, "created_at": T0, "max_deadline": T0 + timedelta(hours=8), **fields}


def test_a_ready_session_is_due_after_the_ready_timeout() -> None:
    assert ready_deadline(session("ready"), 300) == T0 + timedelta(seconds=300)
    assert due_reason(session("ready"), T0 + timedelta(seconds=299), 300) is None
    assert due_reason(session("ready"), T0 + timedelta(seconds=300), 300) is TerminationReason.READY_TIMEOUT


def test_the_ready_timeout_counts_from_ready_at_and_only_while_ready() -> None:
    later = T0 + timedelta(seconds=100)
    assert ready_deadline(session("ready", ready_at=later), 300) == later + timedelta(seconds=300)
    for status in ("creating", "active", "idle", "suspended", "terminated"):
        assert ready_deadline(session(status), 300) is None
        assert due_reason(session(status), T0 + timedelta(days=1, seconds=-1), 300) in (
            None,
            TerminationReason.MAX_DURATION,
        )


def test_zero_turns_the_ready_timeout_off_and_max_duration_comes_first() -> None:
    assert ready_deadline(session("ready"), 0) is None
    assert due_reason(session("ready"), T0 + timedelta(seconds=400), 0) is None
    overdue = session("ready", max_deadline=T0 + timedelta(seconds=10))
    assert due_reason(overdue, T0 + timedelta(seconds=400), 300) is TerminationReason.MAX_DURATION


async def test_the_mongo_client_bounds_every_operation() -> None:
    client = create_mongo_client("mongodb://127.0.0.1:1/", timeout_seconds=1.5, app_name="t")
    try:
        options = client.options
        assert options.timeout == 1.5  # timeoutMS: client-side operation timeout (CSOT)
        assert options.server_selection_timeout == 1.5
    finally:
        await client.close()
