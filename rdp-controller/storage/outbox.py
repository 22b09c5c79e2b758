"""The outbox's deliveries (collection ``integration_outbox``): stored, claimed, settled.

A delivery document::

    {delivery_id, peer, operation, payload, status, attempts, last_error, note,
     order_key, seq, next_attempt_at, claim_token, created_at, updated_at, delivered_at, failed_at?}

``status``: ``pending`` -> ``in_flight`` (claimed) -> ``delivered`` | back to ``pending`` (released,
to be tried again) | ``failed`` (kept for operators). ``delivery_id`` is unique; delivered documents
expire after ``DELIVERED_RETENTION`` (TTL index on ``delivered_at``). What is sent when, and why,
is ``integration/outbox.py``'s.
"""

from __future__ import annotations

import time
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any, Final

from pymongo import ASCENDING, IndexModel, ReturnDocument
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import DuplicateKeyError

from common.backends import MongoDocument

from .documents import NO_ID, count_by

DELIVERED_RETENTION: Final = timedelta(days=7)


class DeliveryStatus(StrEnum):
    PENDING = "pending"
    IN_FLIGHT = "in_flight"
    DELIVERED = "delivered"
    FAILED = "failed"


UNSENT: Final = [DeliveryStatus.PENDING.value, DeliveryStatus.IN_FLIGHT.value]


class OutboxRepository:
    def __init__(self, collection: AsyncCollection[MongoDocument]):
        self.collection = collection

    async def ensure_indexes(self) -> None:
        """Uniqueness, due deliveries, delivery order, retention; idempotent."""
        await self.collection.create_indexes(
            [
                IndexModel([("delivery_id", ASCENDING)], unique=True, name="delivery_unique"),
                IndexModel([("status", ASCENDING), ("next_attempt_at", ASCENDING)], name="due"),
                IndexModel([("order_key", ASCENDING), ("seq", ASCENDING)], name="delivery_order"),
                IndexModel(
                    [("delivered_at", ASCENDING)],
                    expireAfterSeconds=int(DELIVERED_RETENTION.total_seconds()),
                    name="delivered_retention",
                ),
            ]
        )

    async def add(
        self,
        peer: str,
        operation: str,
        payload: dict[str, Any],
        *,
        delivery_id: str,
        order_key: str,
        now: datetime,
    ) -> bool:
        """Store a pending delivery, due now; False when one with this id exists already."""
        document: MongoDocument = {
            "delivery_id": delivery_id,
            "peer": peer,
            "operation": operation,
            "payload": payload,
            "status": DeliveryStatus.PENDING.value,
            "attempts": 0,
            "last_error": None,
            "note": None,
            "order_key": order_key,
            "seq": time.time_ns(),
            "next_attempt_at": now,
            "claim_token": None,
            "created_at": now,
            "updated_at": now,
            "delivered_at": None,
        }
        try:
            await self.collection.insert_one(document)
        except DuplicateKeyError:
            return False
        return True

    async def claim(
        self, token: str, peer: str | None, *, now: datetime, expires: datetime
    ) -> MongoDocument | None:
        """The most overdue unsent delivery (of one peer, or any), claimed with ``token`` until
        ``expires`` and its attempts counted; None when nothing is due."""
        query: dict[str, Any] = {"status": {"$in": UNSENT}, "next_attempt_at": {"$lte": now}}
        if peer is not None:
            query["peer"] = peer
        return await self.collection.find_one_and_update(
            query,
            {
                "$set": {
                    "status": DeliveryStatus.IN_FLIGHT.value,
                    "claim_token": token,
                    "next_attempt_at": expires,
                    "updated_at": now,
                },
                "$inc": {"attempts": 1},
            },
            sort=[("next_attempt_at", ASCENDING)],
            projection=NO_ID,
            return_document=ReturnDocument.AFTER,
        )

    async def first_unsent_before(self, delivery: MongoDocument) -> MongoDocument | None:
        """The first unsent delivery enqueued before this one with its order key (its status and
        ``next_attempt_at`` only), or None."""
        return await self.collection.find_one(
            {"order_key": delivery["order_key"], "seq": {"$lt": delivery["seq"]}, "status": {"$in": UNSENT}},
            {"next_attempt_at": True, "status": True, "_id": False},
            sort=[("seq", ASCENDING)],
        )

    async def release(
        self, delivery_id: str, token: str, changes: dict[str, Any], *, now: datetime, uncount: bool = False
    ) -> None:
        """Hand a claimed delivery back (pending, with ``changes``); ``uncount``: this attempt was none."""
        update: dict[str, Any] = {
            "$set": {
                "status": DeliveryStatus.PENDING.value,
                "claim_token": None,
                "updated_at": now,
                **changes,
            }
        }
        if uncount:
            update["$inc"] = {"attempts": -1}
        await self.collection.update_one({"delivery_id": delivery_id, "claim_token": token}, update)

    async def mark_delivered(self, delivery_id: str, note: str | None, *, now: datetime) -> None:
        # Not filtered on the claim token: the peer has it, whoever claimed it since.
        await self.collection.update_one(
            {"delivery_id": delivery_id, "status": {"$ne": DeliveryStatus.DELIVERED.value}},
            {
                "$set": {
                    "status": DeliveryStatus.DELIVERED.value,
                    "delivered_at": now,
                    "updated_at": now,
                    "note": note,
                    "claim_token": None,
                    "next_attempt_at": None,
                }
            },
        )

    async def mark_failed(self, delivery_id: str, token: str, error: str, *, now: datetime) -> None:
        await self.collection.update_one(
            {"delivery_id": delivery_id, "claim_token": token},
            {
                "$set": {
                    "status": DeliveryStatus.FAILED.value,
                    "last_error": error,
                    "failed_at": now,
                    "updated_at": now,
                    "claim_token": None,
                    "next_attempt_at": None,
                }
            },
        )

    async def counts(self) -> dict[str, int]:
        """Deliveries by status (delivered ones only until their retention expires)."""
        return await count_by(self.collection, "status", DeliveryStatus)
