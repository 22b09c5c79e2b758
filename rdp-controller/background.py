"""
Background loops owned by the lifespan. A leader loop runs its body on one replica at a time:
it holds a Redis lock that it renews each round; when the holder dies the lock expires and
another replica takes over. Failures of a round are logged and shown in ``/health``; the
loop goes on.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from pymongo.errors import PyMongoError
from redis.exceptions import RedisError

from common.errors import LucidError

from .storage.redis import RedisCoordination

logger = logging.getLogger(__name__)

# What a round may fail with and the loop survives; anything else is a bug and is logged with its trace.
RECOVERABLE = (PyMongoError, RedisError, OSError, LucidError)
STOP_TIMEOUT_SECONDS = 10.0


@dataclass
class LoopState:
    name: str
    status: str = "starting"
    rounds: int = 0
    last_error: str | None = None


@dataclass
class Background:
    coordination: RedisCoordination
    states: dict[str, LoopState] = field(default_factory=dict)
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)
    _stopping: asyncio.Event = field(default_factory=asyncio.Event)

    def spawn(
        self,
        name: str,
        body: Callable[[], Awaitable[object]],
        *,
        interval: float,
        leader: bool,
        wait_for: asyncio.Event | None = None,
    ) -> None:
        state = self.states.setdefault(name, LoopState(name))
        self._tasks.append(asyncio.create_task(self._run(state, body, interval, leader, wait_for), name=name))

    async def _run(
        self,
        state: LoopState,
        body: Callable[[], Awaitable[object]],
        interval: float,
        leader: bool,
        wait_for: asyncio.Event | None,
    ) -> None:
        token = self.coordination.new_lock_token()
        lock_ttl = max(interval * 3, 10.0)
        if wait_for is not None:
            state.status = "waiting for MongoDB"
            await wait_for.wait()
        try:
            while not self._stopping.is_set():
                try:
                    if leader and not await self.coordination.hold_lock(state.name, token, lock_ttl):
                        state.status = "standby"
                    else:
                        await body()
                        state.rounds += 1
                        state.status = "leader" if leader else "running"
                        state.last_error = None
                except RECOVERABLE as exc:
                    if self._cancelled():
                        # PyMongo can turn a cancellation during I/O into a network error: honour the stop.
                        raise asyncio.CancelledError from exc
                    state.status = "error"
                    state.last_error = f"{type(exc).__name__}: {exc}"[:300]
                    logger.warning("Background %s round failed: %s", state.name, state.last_error)
                except Exception:
                    state.status = "error"
                    state.last_error = "unexpected error (see log)"
                    logger.exception("Background %s round failed unexpectedly", state.name)
                if self._cancelled():
                    # redis-py can finish a command and swallow the cancellation that arrived during it.
                    raise asyncio.CancelledError
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), interval)
        finally:
            if leader:
                with contextlib.suppress(*RECOVERABLE):
                    await self.coordination.release_lock(state.name, token)

    def _cancelled(self) -> bool:
        task = asyncio.current_task()
        return self._stopping.is_set() or (task is not None and task.cancelling() > 0)

    def summary(self) -> dict[str, str]:
        return {name: state.status for name, state in self.states.items()}

    async def stop(self) -> None:
        """Stop every loop; a loop that does not end within the bound is logged and left behind."""
        self._stopping.set()
        for task in self._tasks:
            task.cancel()
        if self._tasks:
            _done, pending = await asyncio.wait(self._tasks, timeout=STOP_TIMEOUT_SECONDS)
            for task in pending:
                logger.error("Background %s did not stop within %ss", task.get_name(), STOP_TIMEOUT_SECONDS)
        self._tasks.clear()
