"""How the benchmark scripts measure: nearest-rank percentiles, and the CPU time of named processes
over a phase (read from /proc)."""

from __future__ import annotations

from collections.abc import Sequence

from tests.support.process import cpu_seconds, descendants


def percentile(values: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(values)
    index = max(0, min(len(ordered) - 1, round(fraction * len(ordered) + 0.5) - 1))
    return ordered[index]


class CpuMeter:
    """CPU seconds (user + system) of named processes over a phase, from /proc.

    The service counts with its live descendants (its uvicorn workers, with ``RDP_CONTROLLER_WORKERS``
    above 1); the other processes alone (the bench client's descendants are the servers).
    """

    TREES = frozenset({"service"})

    def __init__(self, pids: dict[str, int]) -> None:
        self.pids = pids
        self._start: dict[str, float] = {}

    @classmethod
    def _seconds(cls, pid: int, tree: bool) -> float | None:
        own = cpu_seconds(pid)
        if own is None or not tree:
            return own
        return own + sum(cpu_seconds(child) or 0.0 for child, _start, _command in descendants(pid))

    def start(self) -> None:
        self._start = {
            name: s
            for name, pid in self.pids.items()
            if (s := self._seconds(pid, name in self.TREES)) is not None
        }

    def stop(self) -> dict[str, float]:
        used = {}
        for name, pid in self.pids.items():
            now = self._seconds(pid, name in self.TREES)
            if now is not None and name in self._start:
                used[name] = now - self._start[name]
        return used
