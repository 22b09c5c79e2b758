"""How bench_sessions.py measures: pairs run by concurrent workers, rounds alternated between the
service and the floor (ABBA) with the CPU of every process and the servers' counters over each, and
the read routes alone."""

from __future__ import annotations

import argparse
import asyncio
import os
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from tests.performance.session_floor import COUNTER_NOISE, FloorTarget
from tests.performance.session_service_target import ServiceTarget
from tests.support.measuring import CpuMeter
from tests.support.process import descendants


@dataclass
class Result:
    pairs: int
    seconds: float
    create_ms: list[float]
    terminate_ms: list[float]
    cpu: dict[str, float] = field(default_factory=dict)
    operations: dict[str, int] = field(default_factory=dict)

    @property
    def pairs_per_second(self) -> float:
        return self.pairs / self.seconds

    def add(
        self,
        pairs: int,
        seconds: float,
        creates: list[float],
        terminates: list[float],
        cpu: dict[str, float],
        operations: dict[str, int],
    ) -> None:
        self.pairs += pairs
        self.seconds += seconds
        self.create_ms += creates
        self.terminate_ms += terminates
        for name, used in cpu.items():
            self.cpu[name] = self.cpu.get(name, 0.0) + used
        for name, count in operations.items():
            self.operations[name] = self.operations.get(name, 0) + count


PairRunner = Callable[[int], Awaitable[tuple[float, float]]]


async def run_pairs(
    pairs: int, concurrency: int, one_pair: PairRunner
) -> tuple[float, list[float], list[float]]:
    """``pairs`` calls of ``one_pair(worker)`` by ``concurrency`` workers; seconds and latencies (ms)."""
    remaining = pairs
    creates: list[float] = []
    terminates: list[float] = []

    async def worker(number: int) -> None:
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            create_ms, terminate_ms = await one_pair(number)
            creates.append(create_ms)
            terminates.append(terminate_ms)

    started = time.perf_counter()
    async with asyncio.TaskGroup() as group:
        for number in range(concurrency):
            group.create_task(worker(number))
    return time.perf_counter() - started, creates, terminates


def backend_pids() -> dict[str, int]:
    """The embedded SecantusDB and Redis started by this process (empty for external backends)."""
    pids = {}
    for pid, _start, command in descendants(os.getpid()):
        if "secantus" in command:
            pids["mongodb"] = pid
        elif "redis-server" in command:
            pids["redis"] = pid
    return pids


async def alternate(
    service: ServiceTarget,
    floor: FloorTarget,
    pairs: int,
    concurrency: int,
    rounds: int,
    pids: dict[str, int],
) -> tuple[Result, Result]:
    """``pairs`` per side in ``rounds`` rounds, ordered S F, F S, S F ... (ABBA: a drift weighs on both)."""
    results = {target.name: Result(0, 0.0, [], []) for target in (service, floor)}
    for round_number in range(rounds):
        size = pairs // rounds + (1 if round_number < pairs % rounds else 0)
        for target in (service, floor) if round_number % 2 == 0 else (floor, service):
            meter = CpuMeter({k: v for k, v in pids.items() if k != "service" or target is service})
            before = await floor.counters()
            meter.start()
            seconds, creates, terminates = await run_pairs(size, concurrency, target.one_pair)
            cpu = meter.stop()
            after = await floor.counters()
            operations = {k: n - before.get(k, 0) for k, n in after.items() if k not in COUNTER_NOISE}
            results[target.name].add(size, seconds, creates, terminates, cpu, operations)
    return results[service.name], results[floor.name]


@dataclass
class Reads:
    """A read route measured alone: requests, seconds, and the service's CPU seconds over them."""

    route: str
    requests: int
    seconds: float
    cpu_seconds: float

    @property
    def cpu_ms(self) -> float:
        return self.cpu_seconds * 1000 / self.requests


READ_CONCURRENCY = 10


async def measure_reads(service: ServiceTarget, requests: int, pids: dict[str, int]) -> list[Reads]:
    """``GET /api/v1/sessions/{id}`` (one ``find_one``) and ``GET /health`` (no backend call), each alone."""
    created = await service.client.post(
        "/api/v1/sessions", headers=service.service, json={"user_id": "reader"}
    )
    if created.status_code != 201:
        raise RuntimeError(f"create: {created.status_code} {created.text[:300]}")
    session_id = created.json()["session_id"]
    routes: tuple[tuple[str, str, dict[str, str]], ...] = (
        ("GET /api/v1/sessions/{id}", f"/api/v1/sessions/{session_id}", service.service),
        ("GET /health", "/health", {}),
    )
    found = []
    for route, path, headers in routes:

        async def one(
            _worker: int, path: str = path, headers: dict[str, str] = headers
        ) -> tuple[float, float]:
            answer = await service.client.get(path, headers=headers)
            if answer.status_code != 200:
                raise RuntimeError(f"{path}: {answer.status_code} {answer.text[:300]}")
            return 0.0, 0.0

        await run_pairs(max(requests // 10, 10), READ_CONCURRENCY, one)  # warm-up
        meter = CpuMeter({"service": pids["service"]})
        meter.start()
        seconds, _a, _b = await run_pairs(requests, READ_CONCURRENCY, one)
        found.append(Reads(route, requests, seconds, meter.stop().get("service", 0.0)))
    await service.client.delete(f"/api/v1/sessions/{session_id}", headers=service.service)
    return found


async def measure(
    service: ServiceTarget, floor: FloorTarget, args: argparse.Namespace, pids: dict[str, int]
) -> tuple[list[tuple[int, Result, Result]], list[Reads]]:
    """Warm both up; one client at a time (the overhead per call), then ``--concurrency`` clients; reads."""
    async with service, floor:
        for target in (service, floor):
            await run_pairs(args.warmup, args.concurrency, target.one_pair)
        serial = await alternate(service, floor, args.serial_pairs, 1, 2, pids) if args.serial_pairs else None
        loaded = await alternate(service, floor, args.pairs, args.concurrency, args.rounds, pids)
        reads = await measure_reads(service, args.reads, pids) if args.reads else []
    return ([(1, *serial)] if serial else []) + [(args.concurrency, *loaded)], reads
