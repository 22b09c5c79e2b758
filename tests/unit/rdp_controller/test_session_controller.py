"""SessionController's moves (session_controller.py), on fakes of its repository and effects (no servers)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

import pytest

from common.errors import Conflict
from rdp_controller.models import ConnectionMode, SessionStatus, TerminationReason
from rdp_controller.session_controller import SessionController

S = SessionStatus
NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
CONFIG = {"idle_timeout": 60, "disconnect_timeout": 120, "session_timeout": 3600}


def session(status: SessionStatus, **fields: Any) -> dict[str, Any]:
    return {
        "status": status.value,
        "session_config": CONFIG,
        "created_at": NOW,
        "max_deadline": NOW + timedelta(seconds=3600),
        **fields,
    }


class FakeSessions:
    """The sessions repository's compare-and-set, in memory; ``race`` moves a session under a mover."""

    def __init__(self, document: dict[str, Any]):
        self.document = document
        self.race: dict[str, Any] | None = None

    async def get(self, session_id: str) -> dict[str, Any] | None:
        return dict(self.document) if session_id == self.document["session_id"] else None

    async def compare_and_set(
        self,
        session_id: str,
        status: SessionStatus,
        version: int,
        changes: dict[str, Any],
        *,
        transition: Any,
    ) -> dict[str, Any] | None:
        if self.race is not None:  # another replica wins this round
            self.document.update(self.race, version=self.document["version"] + 1)
            self.race = None
        if (self.document["status"], self.document["version"]) != (status.value, version):
            return None
        self.document.update(changes, version=version + 1)
        if transition is not None:
            self.document.setdefault("pending_transitions", []).append(transition)
        return dict(self.document)


class FakeEffects:
    """Settling records the move and drops it from the stored session, as the real $pull does."""

    def __init__(self, sessions: FakeSessions) -> None:
        self.sessions = sessions
        self.settled: list[tuple[str | None, str]] = []

    async def settle(self, document: dict[str, Any]) -> None:
        for transition in document.get("pending_transitions") or []:
            self.settled.append((transition["from_status"], transition["to_status"]))
        self.sessions.document["pending_transitions"] = []


def controller(
    status: SessionStatus, *, relay: bool = False
) -> tuple[SessionController, FakeSessions, FakeEffects]:
    document = {
        **session(status),
        "session_id": "00000000-0000-4000-8000-000000000001",
        "user_id": "alice",
        "server_id": "s1",
        "connection_id": "c1",
        "version": 3,
    }
    sessions = FakeSessions(document)
    effects = FakeEffects(sessions)
    descriptors = SimpleNamespace(mode=ConnectionMode.RELAY if relay else ConnectionMode.DIRECT, issue=None)
    store = SimpleNamespace(sessions=sessions)
    built = SessionController(store, None, None, descriptors, None, None, effects)  # type: ignore[arg-type]
    return built, sessions, effects


async def test_terminate_moves_once_and_a_second_terminate_changes_nothing() -> None:
    sessions, fake, effects = controller(S.ACTIVE)
    sid = fake.document["session_id"]
    ended = await sessions.terminate(sid, owner=None, reason=TerminationReason.ADMIN, actor="ops")
    assert ended["status"] == "terminated" and ended["termination_reason"] == "admin"
    again = await sessions.terminate(sid, owner=None, reason=TerminationReason.ADMIN, actor="ops")
    assert again["version"] == ended["version"]
    assert effects.settled == [("active", "terminated")]


async def test_a_move_that_loses_a_race_decides_again_on_the_fresh_copy() -> None:
    sessions, fake, effects = controller(S.ACTIVE)
    fake.race = {"status": "suspended", "suspended_at": NOW}  # the client dropped meanwhile
    sid = fake.document["session_id"]
    ended = await sessions.terminate(sid, owner=None, reason=TerminationReason.ADMIN, actor="ops")
    assert ended["status"] == "terminated"
    assert effects.settled == [("suspended", "terminated")]  # decided on the fresh copy


async def test_the_api_cannot_set_a_state_the_controller_owns_nor_another_users_session() -> None:
    sessions, fake, _effects = controller(S.CREATING)
    sid = fake.document["session_id"]
    with pytest.raises(Conflict, match="set by the controller itself"):
        await sessions.update_status(sid, S.READY, owner=None, reason=None, actor="ops")
    with pytest.raises(Exception, match="not found"):
        await sessions.terminate(sid, owner="bob", reason=TerminationReason.USER_REQUEST, actor="bob")


async def test_in_relay_mode_disconnect_suspends_and_a_suspended_session_needs_reconnect() -> None:
    sessions, fake, effects = controller(S.SUSPENDED, relay=True)
    sid = fake.document["session_id"]
    with pytest.raises(Conflict, match=r"use POST \.\.\./reconnect"):
        await sessions.connect(sid, owner=None, actor="alice", client_address=None)
    assert effects.settled == []  # nothing moved
