"""
The client connections this replica relays, and closing them from any replica.

Every relayed connection is registered here by the relay (``relay.py``) for as long as it is
open. A session that ends on any replica (API, reaper, drain deadline, server removal) must lose
its connection wherever it is relayed: ``close`` closes the local ones and publishes the session
on a Redis channel that every replica listens to (``listen_once``, a background loop), so the
replica that holds the connection closes it within a second or so. A message lost while Redis
is away is made up for by the relay's sweep of final sessions.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from redis.asyncio import Redis
from redis.asyncio.client import PubSub
from redis.exceptions import RedisError

logger = logging.getLogger(__name__)

LISTEN_ROUND_SECONDS = 1.0


@dataclass(eq=False)
class RelayedConnection:
    """One client connection relayed to its host; the counters are updated by the byte copy."""

    session_id: str
    connection_id: str
    client_address: str
    abort: Callable[[], None]
    opened_at: float = field(default_factory=time.monotonic)
    bytes_in: int = 0  # client -> host
    bytes_out: int = 0  # host -> client
    last_input_at: datetime | None = None
    input_pending: bool = False  # client input since the last flush
    idle: bool = False  # told the controller there was no input
    closed_by: str | None = None

    def client_sent(self, count: int) -> bool:
        """Count client input; True when it wakes an idle connection (flush it now)."""
        self.bytes_in += count
        self.last_input_at = datetime.now(UTC)
        self.input_pending = True
        if self.idle:
            self.idle = False
            return True
        return False


class ConnectionManager:
    """This replica's relayed connections by session, and the Redis channel that closes them."""

    def __init__(self, redis: Redis, *, channel: str):
        self._redis = redis
        self._channel = channel
        self._by_session: dict[str, dict[str, RelayedConnection]] = {}
        self._pubsub: PubSub | None = None

    def __len__(self) -> int:
        return sum(len(connections) for connections in self._by_session.values())

    def all(self) -> list[RelayedConnection]:
        return [c for connections in self._by_session.values() for c in connections.values()]

    def session_ids(self) -> list[str]:
        return list(self._by_session)

    def add(self, connection: RelayedConnection) -> None:
        self._by_session.setdefault(connection.session_id, {})[connection.connection_id] = connection

    def remove(self, connection: RelayedConnection) -> None:
        connections = self._by_session.get(connection.session_id, {})
        connections.pop(connection.connection_id, None)
        if not connections:
            self._by_session.pop(connection.session_id, None)

    def close_local(self, session_id: str, *, keep: str | None = None, why: str = "closed") -> int:
        """Abort this replica's connections of ``session_id`` (but ``keep``); returns how many."""
        closed = 0
        for connection in list(self._by_session.get(session_id, {}).values()):
            if connection.connection_id != keep:
                connection.closed_by = why
                connection.abort()
                closed += 1
        return closed

    async def close(self, session_id: str, *, keep: str | None = None, why: str = "closed") -> None:
        """Close the session's connections on every replica (``keep``: a newer one that stays)."""
        self.close_local(session_id, keep=keep, why=why)
        message = json.dumps({"session_id": session_id, "keep": keep, "why": why})
        await self._redis.publish(self._channel, message)

    async def listen_once(self) -> None:
        """Act on other replicas' close requests for about a second: one round of a background loop."""
        try:
            if self._pubsub is None:
                pubsub = self._redis.pubsub(ignore_subscribe_messages=True)
                await pubsub.subscribe(self._channel)
                self._pubsub = pubsub
            deadline = time.monotonic() + LISTEN_ROUND_SECONDS
            while (remaining := deadline - time.monotonic()) > 0:
                message = await self._pubsub.get_message(timeout=remaining)
                if message is not None:
                    self._on_message(message["data"])
        except RedisError:
            await self.stop_listening()  # subscribe again next round, on a fresh connection
            await asyncio.sleep(
                LISTEN_ROUND_SECONDS
            )  # the loop runs back to back: not faster while Redis is away
            raise

    def _on_message(self, data: str) -> None:
        try:
            request = json.loads(data)
            session_id, keep, why = str(request["session_id"]), request.get("keep"), str(request["why"])
        except (ValueError, TypeError, KeyError):
            logger.warning("Ignored a malformed relay close request on %s", self._channel)
            return
        if self.close_local(session_id, keep=keep, why=why):
            logger.info("Closed the relayed connection of %s (%s, asked by another replica)", session_id, why)

    async def stop_listening(self) -> None:
        pubsub, self._pubsub = self._pubsub, None
        if pubsub is not None:
            try:
                await pubsub.aclose()  # type: ignore[no-untyped-call]
            except RedisError as exc:
                logger.debug("Relay close channel not closed cleanly: %s", exc)
