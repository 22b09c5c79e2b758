"""The server aggregate's repositories: the registry (``ServerRepository``) and the health
monitor's conditional writes of probe outcomes with the server event log (``ServerHealthRepository``).

Both tell the pool view placement caches when a write changes what it reads (``changed``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime
from typing import Any

from pymongo import ASCENDING, ReturnDocument
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import DuplicateKeyError

from common.backends import MongoDocument
from common.errors import Conflict

from ..models import ServerState
from .documents import NO_ID, new_id, utcnow


class ServerRepository:
    def __init__(self, collection: AsyncCollection[MongoDocument]):
        self.collection = collection
        # Told after each committed change of a server document (placement's cached pool view).
        self.change_listeners: list[Callable[[], Awaitable[None]]] = []

    async def changed(self) -> None:
        for listener in self.change_listeners:
            await listener()

    async def insert(self, document: MongoDocument) -> None:
        try:
            await self.collection.insert_one(dict(document))
        except DuplicateKeyError as exc:
            raise Conflict(
                f"a server at {document['address']}:{document['port']} is registered already",
                code="DUPLICATE_SERVER",
                details={"field": "address"},
            ) from exc
        await self.changed()

    async def get(self, server_id: str) -> MongoDocument | None:
        return await self.collection.find_one({"server_id": server_id}, NO_ID)

    async def all(self) -> list[MongoDocument]:
        return await self.collection.find({}, NO_ID).sort("name", ASCENDING).to_list(length=None)

    async def update(self, server_id: str, changes: dict[str, Any]) -> MongoDocument | None:
        try:
            updated = await self.collection.find_one_and_update(
                {"server_id": server_id},
                {"$set": {**changes, "updated_at": utcnow()}},
                projection=NO_ID,
                return_document=ReturnDocument.AFTER,
            )
        except DuplicateKeyError as exc:
            raise Conflict("another server has that address and port", code="DUPLICATE_SERVER") from exc
        if updated is not None:
            await self.changed()
        return updated

    async def delete(self, server_id: str) -> bool:
        result = await self.collection.delete_one({"server_id": server_id})
        if result.deleted_count == 1:
            await self.changed()
        return result.deleted_count == 1


class ServerHealthRepository:
    """Conditional writes of probe outcomes, and the server event log."""

    def __init__(
        self,
        servers: AsyncCollection[MongoDocument],
        events: AsyncCollection[MongoDocument],
        changed: Callable[[], Awaitable[None]] | None = None,
    ):
        self.servers = servers
        self.events = events
        self.changed = changed  # told when a write changes what placement reads (the pool view)

    async def get(self, server_id: str) -> MongoDocument | None:
        return await self.servers.find_one({"server_id": server_id}, NO_ID)

    async def probe_targets(self) -> list[MongoDocument]:
        query = {"state": {"$ne": ServerState.DISABLED.value}}
        projection = {"_id": False, "server_id": True, "address": True, "port": True}
        return await self.servers.find(query, projection).to_list(length=None)

    async def apply(self, seen: Mapping[str, Any], changes: dict[str, Any]) -> MongoDocument | None:
        """Set ``changes`` only if state, pin and health version are still what ``seen`` holds."""
        version = seen.get("health_version")
        query: dict[str, Any] = {
            "server_id": seen["server_id"],
            "state": seen["state"],
            "pinned_cert_sha256": seen.get("pinned_cert_sha256"),
            "health_version": version if version is not None else {"$exists": False},
        }
        updated = await self.servers.find_one_and_update(
            query,
            {"$set": {**changes, "updated_at": utcnow()}},
            projection=NO_ID,
            return_document=ReturnDocument.AFTER,
        )
        if updated is not None and self.changed is not None and updated.get("state") != seen["state"]:
            await self.changed()  # a probe's figures alone leave placement's view valid; a new state does not
        return updated

    async def record(self, server_id: str, kind: str, old: Any, new: Any, **extra: Any) -> None:
        event = {
            "event_id": new_id(),
            "server_id": server_id,
            "kind": kind,
            "old": old,
            "new": new,
            "at": utcnow(),
        }
        await self.events.insert_one({**event, **extra})

    async def unhealthy_before(self, cutoff: datetime) -> list[str]:
        query = {"health_state": ServerState.UNHEALTHY.value, "unhealthy_since": {"$lte": cutoff}}
        found = await self.servers.find(query, {"_id": False, "server_id": True}).to_list(length=None)
        return [str(document["server_id"]) for document in found]
