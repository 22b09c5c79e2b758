"""Counters and timings of the service, kept by ``prometheus_client``: ``/metrics``, ``/api/v1/metrics``.

Session counts by state come from MongoDB (shared by all replicas); the counters here are this
replica's since it started, as Prometheus counters are.

One worker process (``RDP_CONTROLLER_WORKERS=1``): the values live in this ``Metrics``' own
registry. Several: ``prometheus_client``'s standard multiprocess mode. The entrypoint sets
``PROMETHEUS_MULTIPROC_DIR`` (an empty folder) before any worker starts; each worker writes its
values to files there, and every read here (``value``, ``by_label``, a histogram's figures, the
exposition) sums them over all the workers, so whichever worker answers a scrape or
``/api/v1/metrics`` gives the replica's figures.
"""

from __future__ import annotations

import bisect
import os
import re
import threading
from collections.abc import Iterable

from prometheus_client import CollectorRegistry, Counter, Gauge, disable_created_metrics, generate_latest
from prometheus_client import Histogram as PrometheusHistogram
from prometheus_client import multiprocess as prometheus_multiprocess
from prometheus_client.metrics_core import Metric
from prometheus_client.multiprocess import MultiProcessCollector

PREFIX = "rdp_controller"
MULTIPROCESS_ENV = "PROMETHEUS_MULTIPROC_DIR"
# Placement latency buckets in seconds (Prometheus histogram).
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
# Relayed connection durations in seconds: a second to a day.
DURATION_BUCKETS = (1.0, 10.0, 60.0, 300.0, 900.0, 1800.0, 3600.0, 14400.0, 28800.0, 86400.0)
# The label of a counter in the exposition; ``label`` for the others.
LABEL_NAMES = {
    "sessions_terminated": "reason",
    "reaper_actions": "reason",
    "relay_handshakes": "outcome",
    "relay_bytes": "direction",
}


# Gauges of one process that must read right over several: (label names, how workers combine).
# ``live*``: only processes still running count (files of dead workers are dropped on read).
GAUGES: dict[str, tuple[tuple[str, ...], str, str]] = {
    "relay_connections": ((), "livesum", "Client connections the relay holds now (every worker)."),
    "peer_circuit_state": (
        ("peer",),
        "livemax",
        "Circuit breaker of each peer, the worst over the workers: 0 closed, 1 half open, 2 open.",
    ),
}
_LIVE_GAUGE_FILE = re.compile(r"^gauge_live[a-z]+_([0-9]+)\.db$")


def multiprocess_dir() -> str | None:
    return os.environ.get(MULTIPROCESS_ENV) or None


class Histogram:
    """The figures of a histogram at one moment: per-bucket counts (the last one past the largest bound)."""

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


class Timing:
    """A Prometheus histogram; ``read()`` gives its figures (summed over the worker processes)."""

    def __init__(self, metrics: Metrics, name: str, help_text: str, buckets: Iterable[float]):
        self.metrics = metrics
        self.name = f"{PREFIX}_{name}"
        self.buckets = tuple(buckets)
        self._histogram = PrometheusHistogram(
            self.name, help_text, buckets=self.buckets, registry=metrics.registry
        )

    def observe(self, seconds: float) -> None:
        self._histogram.observe(seconds)

    def read(self) -> Histogram:
        figures = Histogram(self.buckets)
        cumulative: dict[float, float] = {}
        for metric in self.metrics.collect():
            if metric.name != self.name:
                continue
            for sample in metric.samples:
                if sample.name.endswith("_bucket"):
                    bound = float(sample.labels["le"])
                    cumulative[bound] = cumulative.get(bound, 0.0) + sample.value
                elif sample.name.endswith("_sum"):
                    figures.total += sample.value
                elif sample.name.endswith("_count"):
                    figures.count += int(sample.value)
        below = 0.0
        for index, bound in enumerate((*self.buckets, float("inf"))):
            figures.counts[index] = int(cumulative.get(bound, below) - below)
            below = cumulative.get(bound, below)
        return figures


class Metrics:
    """Counters keyed by name and label, and the two histograms; safe from several threads."""

    def __init__(self) -> None:
        disable_created_metrics()  # type: ignore[no-untyped-call]  # no ``*_created`` series per counter
        self._lock = threading.Lock()
        self.registry = CollectorRegistry()
        self._counters: dict[str, Counter] = {}
        self._gauges: dict[str, Gauge] = {}
        self.placement_latency = Timing(
            self, "placement_latency_seconds", "Time to choose a server and reserve a slot.", LATENCY_BUCKETS
        )
        self.relay_durations = Timing(
            self, "relay_connection_seconds", "Durations of closed relayed connections.", DURATION_BUCKETS
        )

    def _counter(self, name: str) -> Counter:
        counter = self._counters.get(name)
        if counter is None:
            with self._lock:
                counter = self._counters.get(name)
                if counter is None:
                    label = LABEL_NAMES.get(name, "label")
                    counter = Counter(
                        f"{PREFIX}_{name}", name.replace("_", " "), [label], registry=self.registry
                    )
                    self._counters[name] = counter
        return counter

    def inc(self, name: str, label: str = "", amount: int = 1) -> None:
        self._counter(name).labels(label).inc(amount)

    def set_gauge(self, name: str, value: float, *labels: str) -> None:
        """Set one of ``GAUGES`` (this process's value; reads combine the workers' values)."""
        gauge = self._gauges.get(name)
        if gauge is None:
            with self._lock:
                gauge = self._gauges.get(name)
                if gauge is None:
                    label_names, mode, help_text = GAUGES[name]
                    gauge = Gauge(
                        f"{PREFIX}_{name}",
                        help_text,
                        label_names,
                        registry=self.registry,
                        multiprocess_mode=mode,  # type: ignore[arg-type]
                    )
                    self._gauges[name] = gauge
        (gauge.labels(*labels) if labels else gauge).set(value)

    def gauge(self, name: str) -> dict[tuple[str, ...], float]:
        """A gauge's values by label values, combined over the workers (empty before it is set)."""
        found: dict[tuple[str, ...], float] = {}
        label_names = GAUGES[name][0]
        for metric in self.collect():
            if metric.type == "gauge" and metric.name == f"{PREFIX}_{name}":
                for sample in metric.samples:
                    found[tuple(sample.labels.get(label, "") for label in label_names)] = sample.value
        return found

    def collect(self) -> list[Metric]:
        """Every metric: this registry's, or with several workers every worker's (summed)."""
        path = multiprocess_dir()
        if path is not None:
            _drop_dead_workers(path)
            collector = MultiProcessCollector(None, path=path)  # type: ignore[no-untyped-call]
            return list(collector.collect())  # type: ignore[no-untyped-call]
        return list(self.registry.collect())

    def counters(self) -> dict[str, dict[str, int]]:
        """Every counter's values by label (summed over the worker processes)."""
        found: dict[str, dict[str, int]] = {}
        for metric in self.collect():
            if metric.type != "counter" or not metric.name.startswith(f"{PREFIX}_"):
                continue
            values = found.setdefault(metric.name.removeprefix(f"{PREFIX}_"), {})
            for sample in metric.samples:
                if sample.name.endswith("_total"):
                    label = next(iter(sample.labels.values()), "")
                    values[label] = values.get(label, 0) + int(sample.value)
        return found

    def value(self, name: str, label: str = "") -> int:
        return self.counters().get(name, {}).get(label, 0)

    def by_label(self, name: str) -> dict[str, int]:
        return dict(self.counters().get(name, {}))

    def exposition(self) -> bytes:
        """The Prometheus text of every counter and histogram (summed over the worker processes)."""
        path = multiprocess_dir()
        if path is None:
            return generate_latest(self.registry)
        registry = CollectorRegistry()
        MultiProcessCollector(registry, path=path)  # type: ignore[no-untyped-call]
        return generate_latest(registry)


def _drop_dead_workers(path: str) -> None:
    """Forget the live gauges of worker processes that are gone (uvicorn restarts a dead worker)."""
    for name in os.listdir(path):
        found = _LIVE_GAUGE_FILE.match(name)
        if found is None:
            continue
        pid = int(found.group(1))
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            prometheus_multiprocess.mark_process_dead(pid, path)  # type: ignore[no-untyped-call]
        except PermissionError:
            pass  # alive, another user's
