"""storage/sessions.py without a server: the page cursor, and the queries and updates each repository
of the session aggregate sends (a recording stand-in of the collection, fake_mongo.py)."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any, cast
from zoneinfo import ZoneInfo

import pytest
from pymongo import ASCENDING, DESCENDING, ReturnDocument
from pymongo.errors import DuplicateKeyError

from common.errors import ValidationFailed
from rdp_controller.models import FINAL_STATUSES, LIVE_STATUSES, SessionStatus
from rdp_controller.storage.sessions import (
    CURSOR_PATTERN,
    ConnectionRepository,
    EventRepository,
    IdempotencyRepository,
    SessionRepository,
    decode_cursor,
    encode_cursor,
)
from tests.unit.rdp_controller.storage.fake_mongo import FakeCollection, Rows

SID = "0b6c9c5e-4f0e-4c53-9d53-4f5f3b0e9a11"
T0 = datetime(2026, 11, 30, 12, 0, 0, 123456, tzinfo=UTC)
NO_ID = {"_id": False}
LIVE = [status.value for status in LIVE_STATUSES]


def sessions(collection: FakeCollection) -> SessionRepository:
    return SessionRepository(cast(Any, collection))


# The page cursor ----------------------------------------------------------------------------
@pytest.mark.parametrize(
    "created_at",
    # 17 digits of microseconds reach the year 5138.
    [T0, datetime(1970, 1, 1, tzinfo=UTC), datetime(5138, 1, 1, tzinfo=UTC)],
)
def test_a_cursor_round_trips_to_the_microsecond(created_at: datetime) -> None:
    cursor = encode_cursor(created_at, SID)
    assert re.fullmatch(CURSOR_PATTERN, cursor), cursor
    assert decode_cursor(cursor) == (created_at, SID)


def test_a_naive_time_is_taken_as_utc_and_another_zone_is_converted() -> None:
    assert encode_cursor(T0.replace(tzinfo=None), SID) == encode_cursor(T0, SID)
    elsewhere = T0.astimezone(ZoneInfo("Europe/Paris"))
    assert encode_cursor(elsewhere, SID) == encode_cursor(T0, SID)
    assert encode_cursor(T0, SID) == f"1796040000123456.{SID}"


@pytest.mark.parametrize(
    "cursor",
    [
        "",
        "abc",
        SID,
        f"12.{SID.upper()}",
        f"-1.{SID}",
        f"{'1' * 18}.{SID}",
        f"12.{SID}x",
        f" 12.{SID}",
        "12.not-a-session-id",
    ],
)
def test_anything_else_is_a_validation_error_naming_the_field(cursor: str) -> None:
    with pytest.raises(ValidationFailed) as caught:
        decode_cursor(cursor)
    assert caught.value.details == {"field": "cursor"}
    assert caught.value.status_code == 422


# SessionRepository ----------------------------------------------------------------------------
async def test_compare_and_set_matches_status_and_version_and_bumps_the_version() -> None:
    collection = FakeCollection()
    collection.answer("find_one_and_update", {"session_id": SID, "version": 4})
    moved = await sessions(collection).compare_and_set(SID, SessionStatus.ACTIVE, 3, {"status": "idle"})
    assert moved == {"session_id": SID, "version": 4}
    (call,) = collection.called("find_one_and_update")
    query, update = call.args
    assert query == {"session_id": SID, "status": "active", "version": 3}
    assert update["$set"]["status"] == "idle" and update["$set"]["updated_at"].tzinfo is not None
    assert update["$inc"] == {"version": 1} and "$push" not in update
    assert call.kwargs == {"projection": NO_ID, "return_document": ReturnDocument.AFTER}


async def test_a_transition_is_pushed_by_the_same_write() -> None:
    collection = FakeCollection()
    transition = {"event_id": "e1", "from_status": "active", "to_status": "idle"}
    await sessions(collection).compare_and_set(
        SID, SessionStatus.ACTIVE, 3, {"status": "idle"}, transition=transition
    )
    _query, update = collection.called("find_one_and_update")[0].args
    assert update["$push"] == {"pending_transitions": transition}


async def test_a_settled_transition_is_pulled_without_moving_the_version() -> None:
    collection = FakeCollection()
    await sessions(collection).settled(SID, "e1")
    (call,) = collection.called("update_one")
    assert call.args == ({"session_id": SID}, {"$pull": {"pending_transitions": {"event_id": "e1"}}})


def page_of(count: int) -> list[dict[str, Any]]:
    """``count`` sessions, newest first, one second apart."""
    return [
        {
            "session_id": f"{index:08x}-0000-4000-8000-000000000000",
            "created_at": T0 - timedelta(seconds=index),
        }
        for index in range(count)
    ]


async def test_a_page_reads_one_more_than_the_limit_to_know_a_next_page_exists() -> None:
    collection = FakeCollection(documents=page_of(3))
    documents, following = await sessions(collection).page({"user_id": "alice"}, 2, None)
    assert [d["session_id"] for d in documents] == [d["session_id"] for d in page_of(2)]
    assert following == encode_cursor(documents[-1]["created_at"], documents[-1]["session_id"])
    assert collection.called("find")[0].args == ({"user_id": "alice"}, NO_ID)
    cursor = collection.cursors[0]
    assert cursor.sorts == [[("created_at", DESCENDING), ("session_id", DESCENDING)]]
    assert cursor.limits == [3]


async def test_the_last_page_has_no_cursor() -> None:
    collection = FakeCollection(documents=page_of(2))
    documents, following = await sessions(collection).page({}, 2, None)
    assert len(documents) == 2 and following is None


async def test_a_cursor_continues_strictly_after_its_position_and_keeps_the_filters() -> None:
    collection = FakeCollection()
    filters = {"user_id": "alice", "status": "active"}
    await sessions(collection).page(filters, 10, encode_cursor(T0, SID))
    query = collection.called("find")[0].args[0]
    assert query == {
        **filters,
        "$or": [
            {"created_at": {"$lt": T0}},
            {"created_at": T0, "session_id": {"$lt": SID}},
        ],
    }
    assert filters == {"user_id": "alice", "status": "active"}  # the caller's dict is left alone


async def test_a_bad_cursor_is_refused_before_any_query() -> None:
    collection = FakeCollection()
    with pytest.raises(ValidationFailed):
        await sessions(collection).page({}, 10, "nope")
    assert collection.calls == []


async def test_live_and_due_queries_name_every_live_status_and_nothing_else() -> None:
    collection = FakeCollection()
    repository = sessions(collection)
    await repository.due(T0, limit=7)
    await repository.live_on_server("s1")
    await repository.live({"session_id": True})
    due, on_server, live = collection.called("find")
    assert due.args[0] == {"status": {"$in": LIVE}, "next_deadline": {"$lte": T0}}
    assert collection.cursors[0].sorts == [("next_deadline", ASCENDING)]
    assert on_server.args[0] == {"server_id": "s1", "status": {"$in": LIVE}}
    assert live.args == ({"status": {"$in": LIVE}}, {"session_id": True})


async def test_final_among_nothing_asks_nothing() -> None:
    collection = FakeCollection()
    assert await sessions(collection).final_among([]) == set()
    assert collection.calls == []
    collection.documents = [{"session_id": "a"}]
    assert await sessions(collection).final_among(["a", "b"]) == {"a"}
    query = collection.called("find")[0].args[0]
    assert query["status"] == {"$in": [status.value for status in FINAL_STATUSES]}


async def test_counts_by_status_name_every_status_even_those_with_no_session() -> None:
    collection = FakeCollection()
    collection.answer("aggregate", Rows([{"_id": "active", "count": 2}, {"_id": "terminated", "count": 5}]))
    counts = await sessions(collection).counts_by_status()
    assert counts == {status.value: 0 for status in SessionStatus} | {"active": 2, "terminated": 5}


# IdempotencyRepository -------------------------------------------------------------------------
def claims(collection: FakeCollection) -> IdempotencyRepository:
    return IdempotencyRepository(cast(Any, collection), stale_seconds=60)


async def test_the_first_request_holds_the_key() -> None:
    collection = FakeCollection()
    assert await claims(collection).claim("alice", "k1", "fp") is None
    (insert,) = collection.called("insert_one")
    claimed = insert.args[0]
    assert {k: v for k, v in claimed.items() if k != "claimed_at"} == {
        "user_id": "alice",
        "key": "k1",
        "fingerprint": "fp",
        "session_id": None,
    }


async def test_a_claim_left_pending_too_long_is_taken_over() -> None:
    collection = FakeCollection()
    collection.answer("insert_one", DuplicateKeyError("taken"))
    collection.answer("find_one_and_update", {"user_id": "alice", "key": "k1"})
    assert await claims(collection).claim("alice", "k1", "fp2") is None
    (takeover,) = collection.called("find_one_and_update")
    query, update = takeover.args
    claimed_at = update["$set"]["claimed_at"]
    assert query == {
        "user_id": "alice",
        "key": "k1",
        "session_id": None,
        "claimed_at": {"$lt": claimed_at - timedelta(seconds=60)},
    }
    assert update["$set"]["fingerprint"] == "fp2"


async def test_a_live_claim_is_answered_to_the_second_request() -> None:
    collection = FakeCollection()
    held = {"user_id": "alice", "key": "k1", "fingerprint": "fp", "session_id": SID}
    collection.answer("insert_one", DuplicateKeyError("taken"))
    collection.answer("find_one", held)
    assert await claims(collection).claim("alice", "k1", "fp") == held


async def test_a_release_frees_only_an_unanswered_claim() -> None:
    collection = FakeCollection()
    await claims(collection).release("alice", "k1")
    assert collection.called("delete_one")[0].args == ({"user_id": "alice", "key": "k1", "session_id": None},)


# EventRepository and ConnectionRepository ---------------------------------------------------------
async def test_an_event_is_appended_once_by_its_id() -> None:
    collection = FakeCollection()
    events = EventRepository(cast(Any, collection))
    collection.answer("update_one", SimpleNamespace(upserted_id="new"), SimpleNamespace(upserted_id=None))
    event = {"event_id": "e1", "session_id": SID, "at": T0}
    assert await events.append_once(event) is True
    assert await events.append_once(event) is False
    call = collection.called("update_one")[0]
    assert call.args == ({"event_id": "e1"}, {"$setOnInsert": event}) and call.kwargs == {"upsert": True}


async def test_activity_sets_only_what_it_was_given() -> None:
    collection = FakeCollection()
    connections = ConnectionRepository(cast(Any, collection))
    await connections.record_activity("c1", None, None, None)
    assert collection.calls == []
    await connections.record_activity("c1", T0, None, 10)
    assert collection.called("update_one")[0].args == (
        {"connection_id": "c1"},
        {"$set": {"last_activity_at": T0, "bytes_out": 10}},
    )


async def test_closing_records_the_figures_and_keeps_a_closed_at_set_earlier() -> None:
    collection = FakeCollection()
    await ConnectionRepository(cast(Any, collection)).close("c1", T0, bytes_in=1, bytes_out=2)
    figures, closed = collection.called("update_one")
    assert figures.args == ({"connection_id": "c1"}, {"$set": {"bytes_in": 1, "bytes_out": 2}})
    assert closed.args == ({"connection_id": "c1", "closed_at": None}, {"$set": {"closed_at": T0}})


async def test_reopening_sets_everything_but_the_id() -> None:
    collection = FakeCollection()
    await ConnectionRepository(cast(Any, collection)).reopen({"connection_id": "c1", "opened_at": T0})
    assert collection.called("update_one")[0].args == ({"connection_id": "c1"}, {"$set": {"opened_at": T0}})
