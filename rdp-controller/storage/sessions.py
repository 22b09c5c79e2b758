"""The session aggregate's repositories: sessions, their Idempotency-Key claims, events, connections.

Every session update is a compare-and-set on ``status`` and ``version``: two replicas racing on
one session cannot both win.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

from pymongo import ASCENDING, DESCENDING, ReturnDocument
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import DuplicateKeyError

from common.backends import MongoDocument
from common.errors import ValidationFailed

from ..models import CURSOR_PATTERN, FINAL_STATUSES, LIVE_STATUSES, SessionStatus
from .documents import NO_ID, count_by, utcnow

# A page cursor is the position of the last session of the page: its ``created_at`` in microseconds
# since the epoch, and its ``session_id``. Any string of this form is a valid position (nothing is
# trusted from it but two sort keys), so openapi.yaml can say exactly which cursors are accepted.
CURSOR_RE = re.compile(CURSOR_PATTERN)
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MICROSECOND = timedelta(microseconds=1)


def encode_cursor(created_at: datetime, session_id: str) -> str:
    moment = created_at if created_at.tzinfo is not None else created_at.replace(tzinfo=UTC)
    return f"{(moment - EPOCH) // MICROSECOND}.{session_id}"


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    if not CURSOR_RE.fullmatch(cursor):
        raise ValidationFailed(
            "cursor: not a cursor this service issued (pass next_cursor as it is)",
            details={"field": "cursor"},
        )
    micros, session_id = cursor.split(".", 1)
    return EPOCH + int(micros) * MICROSECOND, session_id


class SessionRepository:
    def __init__(self, collection: AsyncCollection[MongoDocument]):
        self.collection = collection

    async def insert(self, document: MongoDocument) -> None:
        await self.collection.insert_one(dict(document))

    async def get(self, session_id: str) -> MongoDocument | None:
        return await self.collection.find_one({"session_id": session_id}, NO_ID)

    async def by_idempotency_key(self, user_id: str, key: str) -> MongoDocument | None:
        return await self.collection.find_one({"user_id": user_id, "idempotency_key": key}, NO_ID)

    async def suspended_for(self, user_id: str) -> list[MongoDocument]:
        cursor = self.collection.find(
            {"user_id": user_id, "status": SessionStatus.SUSPENDED.value}, NO_ID
        ).sort("suspended_at", DESCENDING)
        return await cursor.to_list(length=100)

    async def compare_and_set(
        self,
        session_id: str,
        status: SessionStatus,
        version: int,
        changes: dict[str, Any],
        *,
        transition: dict[str, Any] | None = None,
    ) -> MongoDocument | None:
        """Apply ``changes`` only if the session is still at ``status``/``version``; None if it moved.

        ``transition``, the record of a status change, is pushed onto ``pending_transitions`` by
        the same write, so the change and the duty to carry out its effects commit together.
        """
        update: dict[str, Any] = {"$set": {**changes, "updated_at": utcnow()}, "$inc": {"version": 1}}
        if transition is not None:
            update["$push"] = {"pending_transitions": transition}
        return await self.collection.find_one_and_update(
            {"session_id": session_id, "status": status.value, "version": version},
            update,
            projection=NO_ID,
            return_document=ReturnDocument.AFTER,
        )

    async def ready_since(self, cutoff: datetime, limit: int) -> list[MongoDocument]:
        """Sessions ``ready`` since ``cutoff`` or earlier, oldest first (no client has connected)."""
        query = {"status": SessionStatus.READY.value, "created_at": {"$lte": cutoff}}
        found = self.collection.find(query, NO_ID).sort("created_at", ASCENDING)
        return await found.limit(limit).to_list(length=limit)

    async def creating_before(self, cutoff: datetime, limit: int = 500) -> list[MongoDocument]:
        query = {"status": SessionStatus.CREATING.value, "created_at": {"$lt": cutoff}}
        return await self.collection.find(query, NO_ID).to_list(length=limit)

    async def settled(self, session_id: str, event_id: str) -> None:
        """A pending transition's effects are done: drop it (the session's version does not move)."""
        await self.collection.update_one(
            {"session_id": session_id}, {"$pull": {"pending_transitions": {"event_id": event_id}}}
        )

    async def unsettled(self, older_than: datetime, limit: int) -> list[MongoDocument]:
        """Sessions with a transition pending since before ``older_than`` (its effects were interrupted)."""
        found = self.collection.find({"pending_transitions.at": {"$lt": older_than}}, NO_ID)
        return await found.limit(limit).to_list(length=limit)

    async def page(
        self, filters: dict[str, Any], limit: int, cursor: str | None
    ) -> tuple[list[MongoDocument], str | None]:
        query: dict[str, Any] = dict(filters)
        if cursor:
            created, session_id = decode_cursor(cursor)
            query["$or"] = [
                {"created_at": {"$lt": created}},
                {"created_at": created, "session_id": {"$lt": session_id}},
            ]
        found = self.collection.find(query, NO_ID).sort(
            [("created_at", DESCENDING), ("session_id", DESCENDING)]
        )
        documents = await found.limit(limit + 1).to_list(length=limit + 1)
        following = None
        if len(documents) > limit:
            documents = documents[:limit]
            following = encode_cursor(documents[-1]["created_at"], documents[-1]["session_id"])
        return documents, following

    async def due(self, now: datetime, limit: int = 500) -> list[MongoDocument]:
        query = {"status": {"$in": [s.value for s in LIVE_STATUSES]}, "next_deadline": {"$lte": now}}
        return await self.collection.find(query, NO_ID).sort("next_deadline", ASCENDING).to_list(length=limit)

    async def live(self, projection: dict[str, Any] | None = None) -> list[MongoDocument]:
        query = {"status": {"$in": [s.value for s in LIVE_STATUSES]}}
        return await self.collection.find(query, projection or NO_ID).to_list(length=None)

    async def live_on_server(self, server_id: str) -> list[MongoDocument]:
        query = {"server_id": server_id, "status": {"$in": [s.value for s in LIVE_STATUSES]}}
        return await self.collection.find(query, NO_ID).to_list(length=None)

    async def final_among(self, session_ids: list[str]) -> set[str]:
        if not session_ids:
            return set()
        query = {"session_id": {"$in": session_ids}, "status": {"$in": [s.value for s in FINAL_STATUSES]}}
        found = await self.collection.find(query, {"session_id": True, "_id": False}).to_list(length=None)
        return {document["session_id"] for document in found}

    async def counts_by_status(self) -> dict[str, int]:
        return await count_by(self.collection, "status", (status.value for status in SessionStatus))


class IdempotencyRepository:
    """``Idempotency-Key`` claims: the first request with a key claims it, then records its answer.

    One document per (user, key): ``fingerprint`` of the request, ``session_id`` of the answer
    (None while the first request is under way), ``reconnected`` when it reconnected a session.
    A claim left pending by a request that died (its replica killed) is taken over after
    ``stale_seconds``.
    """

    def __init__(self, collection: AsyncCollection[MongoDocument], *, stale_seconds: float):
        self.collection = collection
        self.stale = timedelta(seconds=stale_seconds)

    async def claim(self, user_id: str, key: str, fingerprint: str) -> MongoDocument | None:
        """None when this request now holds the key; else the claim of the request that does."""
        now = utcnow()
        document = {"user_id": user_id, "key": key, "fingerprint": fingerprint, "session_id": None}
        try:
            await self.collection.insert_one({**document, "claimed_at": now})
            return None
        except DuplicateKeyError:
            pass
        taken = await self.collection.find_one_and_update(
            {"user_id": user_id, "key": key, "session_id": None, "claimed_at": {"$lt": now - self.stale}},
            {"$set": {"fingerprint": fingerprint, "claimed_at": now}},
        )
        if taken is not None:
            return None
        return await self.get(user_id, key) or await self.claim(user_id, key, fingerprint)

    async def get(self, user_id: str, key: str) -> MongoDocument | None:
        return await self.collection.find_one({"user_id": user_id, "key": key}, NO_ID)

    async def complete(self, user_id: str, key: str, session_id: str, *, reconnected: bool) -> None:
        await self.collection.update_one(
            {"user_id": user_id, "key": key},
            {"$set": {"session_id": session_id, "reconnected": reconnected, "answered_at": utcnow()}},
        )

    async def release(self, user_id: str, key: str) -> None:
        """The first request failed before it had a session: the key is free for a retry."""
        await self.collection.delete_one({"user_id": user_id, "key": key, "session_id": None})


class EventRepository:
    def __init__(self, collection: AsyncCollection[MongoDocument]):
        self.collection = collection

    async def append_once(self, event: MongoDocument) -> bool:
        """Append the event unless it is there already (by ``event_id``); True when appended now."""
        result = await self.collection.update_one(
            {"event_id": event["event_id"]}, {"$setOnInsert": dict(event)}, upsert=True
        )
        return result.upserted_id is not None

    async def for_session(self, session_id: str, limit: int) -> list[MongoDocument]:
        found = self.collection.find({"session_id": session_id}, NO_ID).sort(
            [("at", ASCENDING), ("seq", ASCENDING)]
        )
        return await found.to_list(length=limit)


class ConnectionRepository:
    def __init__(self, collection: AsyncCollection[MongoDocument]):
        self.collection = collection

    async def open(self, document: MongoDocument) -> None:
        await self.collection.insert_one(dict(document))

    async def close_open(self, session_id: str, at: datetime) -> None:
        await self.collection.update_many(
            {"session_id": session_id, "closed_at": None}, {"$set": {"closed_at": at}}
        )

    async def reopen(self, document: MongoDocument) -> None:
        """A connection id used again (a ready session's first connection after a failed one)."""
        changes = {k: v for k, v in document.items() if k != "connection_id"}
        await self.collection.update_one({"connection_id": document["connection_id"]}, {"$set": changes})

    async def close(self, connection_id: str, at: datetime, *, bytes_in: int, bytes_out: int) -> None:
        """Final figures of a connection; ``closed_at`` stays as it is if a termination set it first."""
        await self.record_activity(connection_id, None, bytes_in, bytes_out)
        await self.collection.update_one(
            {"connection_id": connection_id, "closed_at": None}, {"$set": {"closed_at": at}}
        )

    async def record_activity(
        self, connection_id: str, at: datetime | None, bytes_in: int | None, bytes_out: int | None
    ) -> None:
        changes: dict[str, Any] = {} if at is None else {"last_activity_at": at}
        if bytes_in is not None:
            changes["bytes_in"] = bytes_in
        if bytes_out is not None:
            changes["bytes_out"] = bytes_out
        if changes:
            await self.collection.update_one({"connection_id": connection_id}, {"$set": changes})

    async def page(self, filters: dict[str, Any], limit: int) -> list[MongoDocument]:
        found = self.collection.find(filters, NO_ID).sort("opened_at", DESCENDING)
        return await found.limit(limit).to_list(length=limit)

    async def count_open(self) -> int:
        return await self.collection.count_documents({"closed_at": None})
