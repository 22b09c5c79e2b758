"""
Durable outbox: calls to peer services that must happen, stored in MongoDB before they are made.

The lifecycle hooks never call a peer. They store a delivery (``storage/outbox.py``,
collection ``integration_outbox``) and return; the outbox sends it, now (a kick after enqueue)
or later (the leader loop), until the peer has taken it. Delivery is at-least-once: each delivery
has a ``delivery_id`` (unique) which is sent as the ``Idempotency-Key`` header on every attempt,
so a peer that honours the header acts once per delivery even when it sees the call twice.

The outbox knows no peer: it sends the ``DeliverableCall`` of a delivery's ``(peer, operation)``,
from the calls it is built with (each peer client's, gathered by
``IntegrationManager.deliverable_calls``, and the warm pool's release).

Claiming is one atomic update (pending -> in_flight, ``next_attempt_at`` moved to the claim's
expiry, ``attempts`` incremented), so two replicas never send one delivery at the same time, and
the delivery of a claimer that crashed becomes due again when its claim expires. Deliveries that
share an ``order_key`` (a session's calls to one peer) are sent in the order they were enqueued:
a recording is never stopped before it was started.

Rules:

* A peer whose URL is unset gets no deliveries: ``enqueue`` does not store them at all.
* A 404 to a call that ends something (stop, finalize, delete: ``not_found_is_done``) means the
  peer has nothing to end: the delivery is ``delivered`` with a note, not retried. For
  session-processor finalize, 404 means it knows no such session.
* Timeouts, connection errors, 5xx, 408, 429 and an open circuit are retried with exponential
  backoff; any other 4xx fails the delivery at once (sending it again cannot succeed), and so
  does the last of ``max_attempts``. A failed delivery is kept for operators and counted.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any, Final

from pymongo.errors import PyMongoError

from common.backends import MongoDocument
from common.errors import LucidError

from ..metrics import Metrics
from ..storage.documents import new_id, utcnow
from ..storage.outbox import DeliveryStatus, OutboxRepository
from .deliverable import DeliverableCalls
from .errors import CircuitOpenError, PeerNotConfigured, ServiceError, ServiceNotFoundError

logger = logging.getLogger(__name__)

DEFAULT_MAX_ATTEMPTS: Final = 12
DEFAULT_MAX_DELAY: Final = 900.0
DEFAULT_BATCH: Final = 100
DEFAULT_CONCURRENCY: Final = 16
ORDER_WAIT: Final = timedelta(seconds=1)
RETRYABLE_STATUS: Final = frozenset({408, 429})
MAX_ERROR_LENGTH: Final = 500


def _error_text(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"[:MAX_ERROR_LENGTH]


class Outbox:
    """Stores deliveries in MongoDB and sends them to the peers until they are taken."""

    def __init__(
        self,
        deliveries: OutboxRepository,
        operations: DeliverableCalls,
        *,
        configured: Callable[[str], bool],
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
        """``operations``: what it can deliver, by ``(peer, operation)``; ``configured(peer)``: whether
        the peer is called at all on this replica (its URL set)."""
        if max_attempts < 1 or batch_size < 1 or concurrency < 1:
            raise ValueError("max_attempts, batch_size and concurrency must be at least 1")
        self.deliveries = deliveries
        self.operations = dict(operations)
        self.configured = configured
        self.metrics = metrics
        self.base_delay = base_delay
        self.max_delay = max_delay
        self.max_attempts = max_attempts
        self.claim = timedelta(seconds=claim_seconds)
        self.batch_size = batch_size
        self.concurrency = concurrency
        self._clock = clock
        self._rng = rng or random.Random()
        self._kicks: dict[str, asyncio.Task[None]] = {}
        self._kick_again: set[str] = set()
        self._closed = False

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
        if not self.configured(peer):
            return False
        stored = await self.deliveries.add(
            peer,
            operation,
            payload,
            delivery_id=delivery_id,
            order_key=order_key or delivery_id,
            now=self._clock(),
        )
        if not stored:
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
        return await self.deliveries.claim(token, peer, now=now, expires=now + self.claim)

    async def _deliver(self, document: MongoDocument, token: str) -> None:
        delivery_id, peer = document["delivery_id"], document["peer"]
        if await self._wait_for_earlier(document, token):
            return
        call = self.operations.get((peer, document["operation"]))
        if call is None:
            await self._fail(
                document, token, f"no handler for {peer}/{document['operation']} on this replica"
            )
            return
        try:
            note = await call.send(document["payload"], delivery_id)
        except ServiceNotFoundError as exc:
            if call.not_found_is_done:
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
        earlier = await self.deliveries.first_unsent_before(document)
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
        await self.deliveries.release(
            document["delivery_id"], token, changes, now=self._clock(), uncount=uncount
        )

    async def _delivered(self, document: MongoDocument, token: str, note: str | None) -> None:
        await self.deliveries.mark_delivered(document["delivery_id"], note, now=self._clock())
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
        await self.deliveries.mark_failed(document["delivery_id"], token, error, now=self._clock())
        self.metrics.inc("outbox_failed", document["peer"])
        logger.error(
            "Delivery %s (%s/%s) failed for good: %s", document["delivery_id"], document["peer"],
            document["operation"], error,
        )  # fmt: skip

    # Observability and shutdown -----------------------------------------------------------
    async def counts(self) -> dict[str, int]:
        """Deliveries by status (delivered ones only until their retention expires)."""
        return await self.deliveries.counts()

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
