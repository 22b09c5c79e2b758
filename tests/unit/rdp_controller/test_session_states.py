"""The session state machine (session_states.py): the table, the 409 of an illegal move, the deadlines."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from rdp_controller.models import SessionStatus
from rdp_controller.session_states import TRANSITIONS, compute_deadlines, invalid_transition, ready_deadline

S = SessionStatus
NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
CONFIG = {"idle_timeout": 60, "disconnect_timeout": 120, "session_timeout": 3600}

# ../shared/ARCHITECTURE.md, "States and transitions".
DOCUMENTED = {
    S.CREATING: {S.READY, S.ERROR},
    S.READY: {S.ACTIVE, S.TERMINATED},
    S.ACTIVE: {S.IDLE, S.SUSPENDED, S.TERMINATED},
    S.IDLE: {S.ACTIVE, S.SUSPENDED, S.TERMINATED},
    S.SUSPENDED: {S.ACTIVE, S.TERMINATED},
    S.TERMINATED: set(),
    S.ERROR: set(),
}


def test_the_table_is_the_documented_state_machine() -> None:
    assert {status: set(targets) for status, targets in TRANSITIONS.items()} == DOCUMENTED


def test_an_illegal_move_is_a_409_naming_the_allowed_targets() -> None:
    error = invalid_transition(S.READY, S.IDLE)
    assert error.status_code == 409 and error.code == "INVALID_TRANSITION"
    assert error.details == {"from": "ready", "to": "idle", "allowed": ["active", "terminated"]}
    assert "final state" in invalid_transition(S.TERMINATED, S.ACTIVE).message


def session(status: SessionStatus, **fields: Any) -> dict[str, Any]:
    return {
        "status": status.value,
        "session_config": CONFIG,
        "created_at": NOW,
        "max_deadline": NOW + timedelta(seconds=3600),
        **fields,
    }


@pytest.mark.parametrize(
    ("document", "idle", "disconnect"),
    [
        (session(S.READY), NOW + timedelta(seconds=60), None),
        (session(S.ACTIVE, last_activity_at=NOW + timedelta(seconds=30)), NOW + timedelta(seconds=90), None),
        (session(S.SUSPENDED, suspended_at=NOW), None, NOW + timedelta(seconds=120)),
        (session(S.CREATING), None, None),  # its provisioning timeout bounds it, not the idle timer
    ],
)
def test_deadlines_of_each_live_state(
    document: dict[str, Any], idle: datetime | None, disconnect: datetime | None
) -> None:
    deadlines = compute_deadlines(document)
    assert (deadlines["idle_deadline"], deadlines["disconnect_deadline"]) == (idle, disconnect)
    assert deadlines["max_deadline"] == NOW + timedelta(seconds=3600)
    assert deadlines["next_deadline"] == min(d for d in (idle, disconnect, deadlines["max_deadline"]) if d)


def test_a_final_session_has_no_deadline() -> None:
    deadlines = compute_deadlines(session(S.TERMINATED))
    assert set(deadlines.values()) == {None}


def test_the_ready_deadline_counts_from_ready_at_else_from_creation() -> None:
    assert ready_deadline(session(S.READY), 300) == NOW + timedelta(seconds=300)
    later = NOW + timedelta(seconds=100)
    assert ready_deadline(session(S.READY, ready_at=later), 300) == later + timedelta(seconds=300)


def test_only_a_ready_session_has_a_ready_deadline_and_zero_turns_it_off() -> None:
    for status in (S.CREATING, S.ACTIVE, S.IDLE, S.SUSPENDED, S.TERMINATED):
        assert ready_deadline(session(status), 300) is None
    assert ready_deadline(session(S.READY), 0) is None
