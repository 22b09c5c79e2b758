"""The warm pool's entries (collection ``warm_pool``): one per dedicated server it provisions.

A document::

    {entry_id, state, slot?, server_id, manager_server_id, address, port, session_id, user_id,
     on_demand, created_at, ready_at, claimed_at, released_at, release_reason, last_error, updated_at}

``state``: provisioning -> ready (stock) | claimed (on demand) -> claimed -> releasing -> released;
``failed`` when provisioning failed (kept for operators). Stock is counted in ``slot`` 0..N-1, held
by a unique index, so replicas refilling at the same time never provision more than N; an entry
leaves its slot when it is claimed, fails or is released. What is provisioned when, and why, is
``integration/warm_pool.py``'s.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any, Final

from pymongo import ASCENDING, IndexModel, ReturnDocument
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import DuplicateKeyError

from common.backends import MongoDocument

from .documents import NO_ID, count_by


class EntryState(StrEnum):
    PROVISIONING = "provisioning"
    READY = "ready"
    CLAIMED = "claimed"
    RELEASING = "releasing"
    RELEASED = "released"
    FAILED = "failed"


LEAVE_SLOT: Final = {"$unset": {"slot": ""}}
"""Merged into an update: the entry leaves its stock slot (claimed, failed or released)."""


class WarmPoolRepository:
    def __init__(self, collection: AsyncCollection[MongoDocument]):
        self.collection = collection

    async def ensure_indexes(self) -> None:
        """Create the collection's indexes; idempotent."""
        await self.collection.create_indexes(
            [
                IndexModel([("entry_id", ASCENDING)], unique=True, name="entry_unique"),
                # Stock slots: at most one live stock entry per slot, across replicas.
                IndexModel(
                    [("slot", ASCENDING)],
                    unique=True,
                    partialFilterExpression={"slot": {"$exists": True}},
                    name="slot_unique",
                ),
                IndexModel([("state", ASCENDING), ("ready_at", ASCENDING)], name="state_ready"),
                IndexModel([("server_id", ASCENDING)], name="server"),
            ]
        )

    # Provisioning -------------------------------------------------------------------------
    async def reserve_slot(self, entry_id: str, slot: int, *, now: datetime) -> bool:
        """A stock entry being provisioned in ``slot``; False when the slot holds stock already."""
        try:
            await self.collection.insert_one(
                {
                    "entry_id": entry_id,
                    "slot": slot,
                    "state": EntryState.PROVISIONING.value,
                    "on_demand": False,
                    "created_at": now,
                    "updated_at": now,
                }
            )
        except DuplicateKeyError:
            return False
        return True

    async def add_on_demand(self, entry_id: str, *, session_id: str, user_id: str, now: datetime) -> None:
        """An entry being provisioned for this session (no slot: it is no stock)."""
        await self.collection.insert_one(
            {
                "entry_id": entry_id,
                "state": EntryState.PROVISIONING.value,
                "on_demand": True,
                "session_id": session_id,
                "user_id": user_id,
                "created_at": now,
                "updated_at": now,
            }
        )

    async def update(self, entry_id: str, fields: dict[str, Any], *, now: datetime) -> MongoDocument | None:
        return await self.collection.find_one_and_update(
            {"entry_id": entry_id},
            {"$set": {**fields, "updated_at": now}},
            projection=NO_ID,
            return_document=ReturnDocument.AFTER,
        )

    async def mark_failed(self, entry_id: str, error: str, *, now: datetime) -> None:
        await self.collection.update_one(
            {"entry_id": entry_id},
            {
                "$set": {"state": EntryState.FAILED.value, "last_error": error, "updated_at": now},
                **LEAVE_SLOT,
            },
        )

    async def abandon_provisioning(self, *, created_before: datetime) -> None:
        """Entries provisioning since before ``created_before`` failed: whoever provisioned them died."""
        await self.collection.update_many(
            {"state": EntryState.PROVISIONING.value, "created_at": {"$lte": created_before}},
            {
                "$set": {
                    "state": EntryState.FAILED.value,
                    "last_error": "abandoned: provisioning never finished",
                },
                **LEAVE_SLOT,
            },
        )

    # Claims -------------------------------------------------------------------------------
    async def claim_ready(self, *, session_id: str, user_id: str, now: datetime) -> MongoDocument | None:
        """The oldest ready entry, claimed for this session (and out of its slot); None when none is."""
        return await self.collection.find_one_and_update(
            {"state": EntryState.READY.value},
            {
                "$set": {
                    "state": EntryState.CLAIMED.value,
                    "session_id": session_id,
                    "user_id": user_id,
                    "claimed_at": now,
                    "updated_at": now,
                },
                **LEAVE_SLOT,
            },
            sort=[("ready_at", ASCENDING)],
            projection=NO_ID,
            return_document=ReturnDocument.AFTER,
        )

    # What the sweep releases --------------------------------------------------------------
    async def idle_stock(self, *, ready_before: datetime, size: int) -> list[MongoDocument]:
        """Ready entries ready since before ``ready_before``, or in a slot beyond ``size``."""
        query = {
            "state": EntryState.READY.value,
            "$or": [{"ready_at": {"$lte": ready_before}}, {"slot": {"$gte": size}}],
        }
        return await self.collection.find(query, NO_ID).to_list(length=None)

    async def claimed_before(self, cutoff: datetime) -> list[MongoDocument]:
        query = {"state": EntryState.CLAIMED.value, "claimed_at": {"$lte": cutoff}}
        return await self.collection.find(query, NO_ID).to_list(length=None)

    async def releasing_since(self, cutoff: datetime) -> list[MongoDocument]:
        """Entries whose release has not finished since ``cutoff`` (it failed midway)."""
        query = {"state": EntryState.RELEASING.value, "updated_at": {"$lte": cutoff}}
        return await self.collection.find(query, NO_ID).to_list(length=None)

    # Release ------------------------------------------------------------------------------
    async def mark_releasing(self, entry_id: str, reason: str, *, now: datetime) -> None:
        await self.collection.update_one(
            {"entry_id": entry_id, "state": {"$ne": EntryState.RELEASED.value}},
            {
                "$set": {"state": EntryState.RELEASING.value, "release_reason": reason, "updated_at": now},
                **LEAVE_SLOT,
            },
        )

    async def unreleased_of_server(self, server_id: str) -> MongoDocument | None:
        """The entry of this pool server, unless it is released (or it is no warm-pool server)."""
        return await self.collection.find_one(
            {"server_id": server_id, "state": {"$ne": EntryState.RELEASED.value}}, NO_ID
        )

    # Observability ------------------------------------------------------------------------
    async def counts(self) -> dict[str, int]:
        """Entries by state."""
        return await count_by(self.collection, "state", EntryState)
