"""
Durable outbox: calls to peer services that must happen, stored in MongoDB before they are made.

The lifecycle hooks never call a peer. They insert a delivery (collection ``integration_outbox``)
and return; the outbox sends it, now (a kick after enqueue) or later (the leader loop), until
the peer has taken it. Delivery is at-least-once: each delivery has a ``delivery_id`` (unique
index) which is sent as the ``Idempotency-Key`` header on every attempt, so a peer that honours
the header acts once per delivery even when it sees the call twice.

A delivery document::

    {delivery_id, peer, operation, payload, status, attempts, last_error, note,
     order_key, seq, next_attempt_at, claim_token, created_at, updated_at, delivered_at}

``status``: ``pending`` -> ``in_flight`` (claimed) -> ``delivered`` | back to ``pending`` (rescheduled
with exponential backoff) | ``failed`` (gave up after ``max_attempts``, or a permanent refusal such
as a 4xx; kept for operators and counted in metrics).

Claiming is one atomic ``find_one_and_update`` (pending -> in_flight, ``next_attempt_at`` moved to
the claim's expiry, ``attempts`` incremented), so two replicas never send one delivery at the
same time, and the delivery of a claimer that crashed becomes due again when its claim expires.
Deliveries that share an ``order_key`` (a session's calls to one peer) are sent in the order they
were enqueued: a recording is never stopped before it was started.

Rules:

* A peer whose URL is unset gets no deliveries: ``enqueue`` does not store them at all.
* A 404 to an operation that ends something (stop, finalize, delete) means the peer has nothing
  to end: the delivery is ``delivered`` with a note, not retried. For session-processor finalize,
  404 means it knows no such session.
* Timeouts, connection errors, 5xx, 408, 429 and an open circuit are retried with backoff; any
  other 4xx fails the delivery at once (sending it again cannot succeed).
* Delivered documents expire after ``DELIVERED_RETENTION`` (TTL index on ``delivered_at``).
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any, Final, TypeVar

from pymongo import ASCENDING, IndexModel, ReturnDocument
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import DuplicateKeyError, PyMongoError

from common.backends import MongoDocument
from common.errors import LucidError

from ..metrics import Metrics
from ..storage.mongo import new_id, utcnow
from .errors import CircuitOpenError, ServiceError, ServiceNotFoundError
from .integration_manager import IntegrationManager

logger = logging.getLogger(__name__)

RECORDER: Final = "session_recorder"
MONITOR: Final = "rdp_monitor"
PROCESSOR: Final = "session_processor"
SERVER_MANAGER: Final = "rdp_server_manager"

DEFAULT_MAX_ATTEMPTS: Final = 12
DEFAULT_MAX_DELAY: Final = 900.0
DEFAULT_BATCH: Final = 100
DEFAULT_CONCURRENCY: Final = 16
DELIVERED_RETENTION: Final = timedelta(days=7)
ORDER_WAIT: Final = timedelta(seconds=1)
RETRYABLE_STATUS: Final = frozenset({408, 429})
MAX_ERROR_LENGTH: Final = 500
NO_ID: Final = {"_id": False}

Handler = Callable[[dict[str, Any], str], Awaitable[str | None]]
"""Sends one delivery: ``(payload, delivery_id)`` -> an optional note. Raises ``ServiceError``."""


class DeliveryStatus(StrEnum):
    PENDING = "pending"
    IN_FLIGHT = "in_flight"
    DELIVERED = "delivered"
    FAILED = "failed"


class PeerNotConfigured(ServiceError):
    """The delivery's peer has no usable client on this replica (URL unset or invalid)."""


@dataclass(frozen=True)
class Operation:
    handler: Handler
    not_found_is_done: bool = False


ClientT = TypeVar("ClientT")


def _require(client: ClientT | None, peer: str) -> ClientT:
    if client is None:
        raise PeerNotConfigured(f"{peer} is not configured on this replica")
    return client


def standard_operations(manager: IntegrationManager) -> dict[tuple[str, str], Operation]:
    """The operations the lifecycle hooks enqueue, keyed by (peer, operation)."""

    async def start_recording(payload: dict[str, Any], key: str) -> str | None:
        await _require(manager.session_recorder, RECORDER).start_recording(
            payload["session_id"],
            owner_address=payload["owner_address"],
            metadata=payload.get("metadata") or {},
            idempotency_key=key,
        )
        return None

    async def stop_recording(payload: dict[str, Any], key: str) -> str | None:
        await _require(manager.session_recorder, RECORDER).stop_recording(
            payload["session_id"], idempotency_key=key
        )
        return None

    async def start_monitoring(payload: dict[str, Any], key: str) -> str | None:
        await _require(manager.rdp_monitor, MONITOR).start_monitoring(
            payload["session_id"], session_config=payload.get("session_config") or {}, idempotency_key=key
        )
        return None

    async def stop_monitoring(payload: dict[str, Any], key: str) -> str | None:
        await _require(manager.rdp_monitor, MONITOR).stop_monitoring(
            payload["session_id"], idempotency_key=key
        )
        return None

    async def finalize_session(payload: dict[str, Any], key: str) -> str | None:
        answer = await _require(manager.session_processor, PROCESSOR).finalize_session(
            payload["session_id"], idempotency_key=key
        )
        root = answer.get("merkle_root")
        return f"merkle_root={root}" if isinstance(root, str) else None

    async def delete_server(payload: dict[str, Any], key: str) -> str | None:
        await _require(manager.rdp_server_manager, SERVER_MANAGER).delete_server(
            payload["server_id"], idempotency_key=key
        )
        return None

    return {
        (RECORDER, "start_recording"): Operation(start_recording),
        (RECORDER, "stop_recording"): Operation(stop_recording, not_found_is_done=True),
        (MONITOR, "start_monitoring"): Operation(start_monitoring),
        (MONITOR, "stop_monitoring"): Operation(stop_monitoring, not_found_is_done=True),
        (PROCESSOR, "finalize_session"): Operation(finalize_session, not_found_is_done=True),
        (SERVER_MANAGER, "delete_server"): Operation(delete_server, not_found_is_done=True),
    }


def _error_text(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"[:MAX_ERROR_LENGTH]


class Outbox:
    """Stores deliveries in MongoDB and sends them to the peers until they are taken."""

    def __init__(
        self,
        collection: AsyncCollection[MongoDocument],
        manager: IntegrationManager,
        *,
        metrics: Metrics,
        base_delay: float = 5.0,
        max_delay: float = DEFAULT_MAX_DELAY,
        max_attempts: int = DEFAULT_MAX_ATTEMPTS,
        claim_seconds: float = 120.0,
        batch_size: int = DEFAULT_BATCH,
        concurrency: int = DEFAULT_CONCURRENCY,
        clock: Callable[[], datetime] = utcnow,
        rng: random.Random | None = None,
    ):
        if max_attempts < 1 or batch_size < 1 or concurrency < 1:
            raise ValueError("max_attempts, batch_size and concurrency must be at least 1")
        self.collection = collection
        self.manager = manager
        self.metrics = metrics
        self.base_delay = base_delay
        self.max_delay = max_delay
        self.max_attempts = max_attempts
        self.claim = timedelta(seconds=claim_seconds)
        self.batch_size = batch_size
        self.concurrency = concurrency
        self.operations = standard_operations(manager)
        self._clock = clock
        self._rng = rng or random.Random()
        self._kicks: dict[str, asyncio.Task[None]] = {}
        self._kick_again: set[str] = set()
        self._closed = False

    def register(
        self, peer: str, operation: str, handler: Handler, *, not_found_is_done: bool = False
    ) -> None:
        """Add (or replace) the handler of one (peer, operation)."""
        self.operations[(peer, operation)] = Operation(handler, not_found_is_done)

    async def ensure_indexes(self) -> None:
        """Indexes beyond those ``MongoStore`` creates (delivery order, retention); idempotent."""
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

    # Enqueue ------------------------------------------------------------------------------
    async def enqueue(
        self,
        peer: str,
        operation: str,
        payload: dict[str, Any],
        *,
        delivery_id: str,
        order_key: str | None = None,
    ) -> bool:
        """Store a delivery; True when stored, False when the peer is not configured or the id exists.

        ``payload`` must hold JSON values only. Raises ``PyMongoError`` when MongoDB is down.
        """
        if (peer, operation) not in self.operations:
            raise ValueError(f"unknown outbox operation {peer}/{operation}")
        if not self.manager.is_configured(peer):
            return False
        now = self._clock()
        document: MongoDocument = {
            "delivery_id": delivery_id,
            "peer": peer,
            "operation": operation,
            "payload": payload,
            "status": DeliveryStatus.PENDING.value,
            "attempts": 0,
            "last_error": None,
            "note": None,
            "order_key": order_key or delivery_id,
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
            logger.debug("Delivery %s is queued already", delivery_id)
            return False
        self.metrics.inc("outbox_enqueued", peer)
        return True

    # Dispatch -----------------------------------------------------------------------------
    def kick(self, peer: str | None = None) -> None:
        """Dispatch due deliveries (of one peer, or all) now, in a task; runs coalesce."""
        if self._closed:
            return
        name = peer or "*"
        running = self._kicks.get(name)
        if running is not None and not running.done():
            self._kick_again.add(name)
            return
        task = asyncio.create_task(self._kicked(peer, name), name=f"outbox-kick-{name}")
        task.add_done_callback(_log_task_failure)
        self._kicks[name] = task

    async def _kicked(self, peer: str | None, name: str) -> None:
        while True:
            self._kick_again.discard(name)
            try:
                await self.dispatch_once(peer=peer)
            except (PyMongoError, LucidError) as exc:
                logger.warning("Outbox dispatch after enqueue failed (the loop will retry): %s", exc)
            if name not in self._kick_again:
                return

    async def dispatch_once(self, *, peer: str | None = None) -> int:
        """Claim the due deliveries (up to a batch) and send them; returns how many were attempted."""
        token = new_id()
        claimed: list[MongoDocument] = []
        while len(claimed) < self.batch_size:
            document = await self._claim(token, peer)
            if document is None:
                break
            claimed.append(document)
        if not claimed:
            return 0
        # One group per order key, sent in order; groups run concurrently, within a bound.
        groups: dict[str, list[MongoDocument]] = {}
        for document in sorted(claimed, key=lambda d: d["seq"]):
            groups.setdefault(document["order_key"], []).append(document)
        limit = asyncio.Semaphore(self.concurrency)

        async def in_order(documents: list[MongoDocument]) -> None:
            async with limit:
                for document in documents:
                    await self._deliver(document, token)

        outcomes = await asyncio.gather(*(in_order(g) for g in groups.values()), return_exceptions=True)
        for key, outcome in zip(groups, outcomes, strict=True):
            if isinstance(outcome, asyncio.CancelledError):
                raise outcome
            if isinstance(outcome, BaseException):
                # Unexpected: the claims expire and the deliveries are tried again (attempts are bounded).
                logger.error(
                    "Outbox deliveries of %s failed unexpectedly",
                    key,
                    exc_info=(type(outcome), outcome, outcome.__traceback__),
                )
        return len(claimed)

    async def _claim(self, token: str, peer: str | None) -> MongoDocument | None:
        now = self._clock()
        query: dict[str, Any] = {
            "status": {"$in": [DeliveryStatus.PENDING.value, DeliveryStatus.IN_FLIGHT.value]},
            "next_attempt_at": {"$lte": now},
        }
        if peer is not None:
            query["peer"] = peer
        return await self.collection.find_one_and_update(
            query,
            {
                "$set": {
                    "status": DeliveryStatus.IN_FLIGHT.value,
                    "claim_token": token,
                    "next_attempt_at": now + self.claim,
                    "updated_at": now,
                },
                "$inc": {"attempts": 1},
            },
            sort=[("next_attempt_at", ASCENDING)],
            projection=NO_ID,
            return_document=ReturnDocument.AFTER,
        )

    async def _deliver(self, document: MongoDocument, token: str) -> None:
        delivery_id, peer = document["delivery_id"], document["peer"]
        if await self._wait_for_earlier(document, token):
            return
        operation = self.operations.get((peer, document["operation"]))
        if operation is None:
            await self._fail(
                document, token, f"no handler for {peer}/{document['operation']} on this replica"
            )
            return
        try:
            note = await operation.handler(document["payload"], delivery_id)
        except ServiceNotFoundError as exc:
            if operation.not_found_is_done:
                await self._delivered(
                    document, token, f"peer has nothing to act on (404): {exc}"[:MAX_ERROR_LENGTH]
                )
            else:
                await self._fail(document, token, _error_text(exc))
            return
        except PeerNotConfigured as exc:
            await self._fail(document, token, _error_text(exc))
            return
        except CircuitOpenError as exc:
            await self._retry(document, token, _error_text(exc), at_least=exc.retry_in)
            return
        except ServiceError as exc:
            if exc.retryable or exc.status_code in RETRYABLE_STATUS:
                await self._retry(document, token, _error_text(exc))
            else:
                await self._fail(document, token, _error_text(exc))
            return
        except (PyMongoError, LucidError) as exc:  # a handler's local work (e.g. the server pool)
            await self._retry(document, token, _error_text(exc))
            return
        await self._delivered(document, token, note)

    async def _wait_for_earlier(self, document: MongoDocument, token: str) -> bool:
        """True (and the delivery handed back) while an earlier delivery with its order key is unsent."""
        earlier = await self.collection.find_one(
            {
                "order_key": document["order_key"],
                "seq": {"$lt": document["seq"]},
                "status": {"$in": [DeliveryStatus.PENDING.value, DeliveryStatus.IN_FLIGHT.value]},
            },
            {"next_attempt_at": True, "status": True, "_id": False},
            sort=[("seq", ASCENDING)],
        )
        if earlier is None:
            return False
        after = self._clock() + ORDER_WAIT
        if earlier["status"] == DeliveryStatus.PENDING.value:
            after = max(after, earlier["next_attempt_at"])
        await self._release(document, token, {"next_attempt_at": after}, uncount=True)
        return True

    async def _release(
        self, document: MongoDocument, token: str, changes: dict[str, Any], *, uncount: bool = False
    ) -> None:
        update: dict[str, Any] = {
            "$set": {
                "status": DeliveryStatus.PENDING.value,
                "claim_token": None,
                "updated_at": self._clock(),
                **changes,
            }
        }
        if uncount:
            update["$inc"] = {"attempts": -1}
        await self.collection.update_one(
            {"delivery_id": document["delivery_id"], "claim_token": token}, update
        )

    async def _delivered(self, document: MongoDocument, token: str, note: str | None) -> None:
        now = self._clock()
        # Not filtered on the claim token: the peer has it, whoever claimed it since.
        await self.collection.update_one(
            {"delivery_id": document["delivery_id"], "status": {"$ne": DeliveryStatus.DELIVERED.value}},
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
        self.metrics.inc("outbox_delivered", document["peer"])

    def delay(self, attempts: int) -> float:
        """Backoff before the next try after ``attempts`` tries: exponential, equal jitter."""
        ceiling: float = min(self.max_delay, self.base_delay * 2.0 ** max(0, attempts - 1))
        return ceiling / 2 + self._rng.uniform(0, ceiling / 2)

    async def _retry(self, document: MongoDocument, token: str, error: str, *, at_least: float = 0.0) -> None:
        attempts = int(document["attempts"])
        if attempts >= self.max_attempts:
            await self._fail(document, token, f"gave up after {attempts} attempts; last error: {error}")
            return
        delay = max(self.delay(attempts), at_least)
        await self._release(
            document,
            token,
            {"last_error": error, "next_attempt_at": self._clock() + timedelta(seconds=delay)},
        )
        self.metrics.inc("outbox_retried", document["peer"])
        logger.info(
            "Delivery %s (%s/%s) failed, attempt %d of %d; next try in %.1fs: %s",
            document["delivery_id"], document["peer"], document["operation"],
            attempts, self.max_attempts, delay, error,
        )  # fmt: skip

    async def _fail(self, document: MongoDocument, token: str, error: str) -> None:
        now = self._clock()
        await self.collection.update_one(
            {"delivery_id": document["delivery_id"], "claim_token": token},
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
        self.metrics.inc("outbox_failed", document["peer"])
        logger.error(
            "Delivery %s (%s/%s) failed for good: %s", document["delivery_id"], document["peer"],
            document["operation"], error,
        )  # fmt: skip

    # Observability and shutdown -----------------------------------------------------------
    async def counts(self) -> dict[str, int]:
        """Deliveries by status (delivered ones only until their retention expires)."""
        counts = {status.value: 0 for status in DeliveryStatus}
        pipeline: list[dict[str, Any]] = [{"$group": {"_id": "$status", "count": {"$sum": 1}}}]
        async for row in await self.collection.aggregate(pipeline):
            counts[str(row["_id"])] = int(row["count"])
        return counts

    async def close(self) -> None:
        """Stop the kicked dispatches; their claims expire and the deliveries are sent later."""
        self._closed = True
        tasks = [task for task in self._kicks.values() if not task.done()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._kicks.clear()


def _log_task_failure(task: asyncio.Task[None]) -> None:
    if task.cancelled():
        return
    exc = task.exception()
    if exc is not None:
        logger.error(
            "Task %s failed unexpectedly", task.get_name(), exc_info=(type(exc), exc, exc.__traceback__)
        )
