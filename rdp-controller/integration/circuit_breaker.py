"""A consecutive-failure circuit breaker per peer service (closed, open, half-open).

Closed -> open after ``failure_threshold`` consecutive failed calls; open refuses at once
(``CircuitOpenError``); after ``reset_seconds`` it is half-open and lets one trial call through:
success closes it, failure opens it again.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from enum import StrEnum

from .errors import CircuitOpenError

Clock = Callable[[], float]


class CircuitState(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class CircuitBreaker:
    """Consecutive-failure circuit breaker; time comes from the injected ``clock`` (monotonic seconds)."""

    def __init__(self, failure_threshold: int, reset_seconds: float, *, clock: Clock = time.monotonic):
        if failure_threshold < 1:
            raise ValueError("failure_threshold must be at least 1")
        if reset_seconds <= 0:
            raise ValueError("reset_seconds must be positive")
        self.failure_threshold = failure_threshold
        self.reset_seconds = reset_seconds
        self._clock = clock
        self._state = CircuitState.CLOSED
        self._failures = 0
        self._opened_at = 0.0
        self._trial_in_flight = False

    @property
    def state(self) -> CircuitState:
        """The state as a caller would find it now (open turns half-open once the cool-down is over)."""
        if self._state is CircuitState.OPEN and self.retry_in() == 0:
            return CircuitState.HALF_OPEN
        return self._state

    @property
    def consecutive_failures(self) -> int:
        return self._failures

    def retry_in(self) -> float:
        """Seconds until an open circuit lets a trial call through (0 when not open)."""
        if self._state is not CircuitState.OPEN:
            return 0.0
        return max(0.0, self._opened_at + self.reset_seconds - self._clock())

    def admit(self) -> bool:
        """Admit a call or raise ``CircuitOpenError``. Returns True when the call is the half-open trial."""
        state = self.state
        if state is CircuitState.CLOSED:
            return False
        if state is CircuitState.HALF_OPEN and not self._trial_in_flight:
            self._state = CircuitState.HALF_OPEN
            self._trial_in_flight = True
            return True
        retry_in = self.retry_in() if state is CircuitState.OPEN else self.reset_seconds
        raise CircuitOpenError(
            f"circuit open after {self._failures} consecutive failures"
            + (
                f"; next trial in {retry_in:.1f}s"
                if state is CircuitState.OPEN
                else "; a trial call is running"
            ),
            retry_in=retry_in,
        )

    def record_success(self) -> None:
        self._state = CircuitState.CLOSED
        self._failures = 0
        self._trial_in_flight = False

    def record_failure(self) -> None:
        self._failures += 1
        trial = self._trial_in_flight
        self._trial_in_flight = False
        if trial or self._failures >= self.failure_threshold:
            self._state = CircuitState.OPEN
            self._opened_at = self._clock()

    def abandon_trial(self) -> None:
        """A trial call ended without a verdict (cancelled): let the next call try instead."""
        self._trial_in_flight = False
