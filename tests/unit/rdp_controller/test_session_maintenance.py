"""The reaper's choice of reason (session_maintenance.due_reason): the ready timeout, then the timers."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from rdp_controller.models import TerminationReason
from rdp_controller.session_maintenance import due_reason

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def session(status: str, **fields: object) -> dict[str, object]:
    return {"status": status, "created_at": T0, "max_deadline": T0 + timedelta(hours=8), **fields}


def test_a_ready_session_is_due_after_the_ready_timeout() -> None:
    assert due_reason(session("ready"), T0 + timedelta(seconds=299), 300) is None
    assert due_reason(session("ready"), T0 + timedelta(seconds=300), 300) is TerminationReason.READY_TIMEOUT


def test_the_ready_timeout_counts_from_ready_at_and_only_while_ready() -> None:
    later = T0 + timedelta(seconds=100)
    assert due_reason(session("ready", ready_at=later), later + timedelta(seconds=299), 300) is None
    assert due_reason(session("ready", ready_at=later), later + timedelta(seconds=300), 300) is (
        TerminationReason.READY_TIMEOUT
    )
    for status in ("creating", "active", "idle", "suspended", "terminated"):
        assert due_reason(session(status), T0 + timedelta(days=1, seconds=-1), 300) in (
            None,
            TerminationReason.MAX_DURATION,
        )


def test_zero_turns_the_ready_timeout_off_and_max_duration_comes_first() -> None:
    assert due_reason(session("ready"), T0 + timedelta(seconds=400), 0) is None
    overdue = session("ready", max_deadline=T0 + timedelta(seconds=10))
    assert due_reason(overdue, T0 + timedelta(seconds=400), 300) is TerminationReason.MAX_DURATION


def test_maximum_duration_then_disconnect_then_idle_and_a_final_session_is_never_due() -> None:
    past, now = T0 + timedelta(seconds=1), T0 + timedelta(seconds=2)
    every = session("suspended", max_deadline=past, disconnect_deadline=past, idle_deadline=past)
    assert due_reason(every, now) is TerminationReason.MAX_DURATION
    assert due_reason({**every, "max_deadline": None}, now) is TerminationReason.DISCONNECT_TIMEOUT
    idle = session("active", idle_deadline=past)
    assert due_reason(idle, now) is TerminationReason.IDLE_TIMEOUT
    assert due_reason(session("active", idle_deadline=now + timedelta(seconds=1)), now) is None
    assert due_reason({**every, "status": "terminated"}, now) is None
