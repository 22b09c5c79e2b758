"""
The session state machine: which moves are allowed, and the deadlines of each state.

Enforced in one place (``SessionController.move``); anything else is refused with 409 and
the allowed targets.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from common.errors import Conflict

from .models import FINAL_STATUSES, SessionStatus

Document = dict[str, Any]

S = SessionStatus
TRANSITIONS: dict[SessionStatus, frozenset[SessionStatus]] = {
    S.CREATING: frozenset({S.READY, S.ERROR}),
    S.READY: frozenset({S.ACTIVE, S.TERMINATED}),
    S.ACTIVE: frozenset({S.IDLE, S.SUSPENDED, S.TERMINATED}),
    S.IDLE: frozenset({S.ACTIVE, S.SUSPENDED, S.TERMINATED}),
    S.SUSPENDED: frozenset({S.ACTIVE, S.TERMINATED}),
    S.TERMINATED: frozenset(),
    S.ERROR: frozenset(),
}
CONTROLLER_ONLY = frozenset({S.CREATING, S.READY, S.ERROR})

# A decision on the freshest copy of a session: (target status or None for no status change,
# field changes), or None when there is nothing to do.
Decision = tuple[SessionStatus | None, Document] | None


def invalid_transition(current: SessionStatus, target: SessionStatus) -> Conflict:
    allowed = sorted(t.value for t in TRANSITIONS[current])
    return Conflict(
        f"session is {current.value}: it cannot become {target.value}"
        + (f" (allowed: {', '.join(allowed)})" if allowed else " (final state)"),
        code="INVALID_TRANSITION",
        details={"from": current.value, "to": target.value, "allowed": allowed},
    )


def ready_deadline(document: Document, timeout_seconds: float) -> datetime | None:
    """When a ``ready`` session no client has connected to is due (``RDP_CONTROLLER_READY_TIMEOUT``).

    Counted from when it became ready (``ready_at``, else its creation); None when the session is
    not ready or the timeout is off (0).
    """
    if timeout_seconds <= 0 or document.get("status") != S.READY.value:
        return None
    since: datetime = document.get("ready_at") or document["created_at"]
    return since + timedelta(seconds=timeout_seconds)


def compute_deadlines(document: Document) -> Document:
    """The idle, disconnect and maximum-duration deadlines for a session in its current state."""
    status = SessionStatus(document["status"])
    config = document["session_config"]
    deadlines: Document = {
        "idle_deadline": None,
        "disconnect_deadline": None,
        "max_deadline": document.get("max_deadline"),
    }
    if status in FINAL_STATUSES:
        deadlines["max_deadline"] = None
    elif status is S.SUSPENDED:
        deadlines["disconnect_deadline"] = document["suspended_at"] + timedelta(
            seconds=config["disconnect_timeout"]
        )
    elif status is S.CREATING:
        pass  # no idle timer while its server is provisioned: the provisioning timeout bounds it
    else:
        since: datetime = document.get("last_activity_at") or document["created_at"]
        deadlines["idle_deadline"] = since + timedelta(seconds=config["idle_timeout"])
    pending = [value for value in deadlines.values() if value is not None]
    deadlines["next_deadline"] = min(pending) if pending else None
    return deadlines
