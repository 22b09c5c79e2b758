"""In-process counters and timings of one replica, for ``/metrics`` and ``/api/v1/metrics``.

Session counts by state come from MongoDB (shared by all replicas); the counters here are
this replica's since it started, as Prometheus counters are.
"""

from __future__ import annotations

import bisect
import threading
from collections import Counter
from collections.abc import Iterable

# Placement latency buckets in seconds (Prometheus histogram).
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
# Relayed connection durations in seconds: a second to a day.
DURATION_BUCKETS = (1.0, 10.0, 60.0, 300.0, 900.0, 1800.0, 3600.0, 14400.0, 28800.0, 86400.0)


class Histogram:
    def __init__(self, buckets: Iterable[float] = LATENCY_BUCKETS):
        self.buckets = tuple(buckets)
        self.counts = [0] * (len(self.buckets) + 1)
        self.total = 0.0
        self.count = 0

    def observe(self, seconds: float) -> None:
        self.counts[bisect.bisect_left(self.buckets, seconds)] += 1
        self.total += seconds
        self.count += 1

    def quantile(self, q: float) -> float | None:
        """Upper bound of the bucket holding quantile ``q`` (None before any observation)."""
        if not self.count:
            return None
        rank, seen = q * self.count, 0
        for index, count in enumerate(self.counts[:-1]):
            seen += count
            if seen >= rank:
                return self.buckets[index]
        return float("inf")

    def bounded_quantile(self, q: float) -> float | None:
        """``quantile`` with the overflow bucket reported as the largest bound (JSON has no infinity)."""
        value = self.quantile(q)
        return self.buckets[-1] if value == float("inf") else value


class Metrics:
    """Counters keyed by name and label; thread-safe enough for one event loop plus threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.counters: Counter[tuple[str, str]] = Counter()
        self.placement_latency = Histogram()
        self.relay_durations = Histogram(DURATION_BUCKETS)

    def inc(self, name: str, label: str = "", amount: int = 1) -> None:
        with self._lock:
            self.counters[(name, label)] += amount

    def value(self, name: str, label: str = "") -> int:
        return self.counters[(name, label)]

    def by_label(self, name: str) -> dict[str, int]:
        return {label: count for (counter, label), count in self.counters.items() if counter == name}
