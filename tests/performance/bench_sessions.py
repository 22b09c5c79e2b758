"""Benchmark: session create+terminate pairs through the running service, against the storage floor.

    .venv/bin/python tests/performance/bench_sessions.py [--pairs 1000] [--concurrency 50] [--quick]

1. Service: starts the embedded stack (SecantusDB + Redis; unless ``MONGODB_URL`` and ``REDIS_URL``
   are both set), then the service as a real process (``rdp-controller/entrypoint.py``, the container's
   CMD; rate limit off), registers one server with a huge capacity, and runs pairs of
   ``POST /api/v1/sessions`` + ``DELETE /api/v1/sessions/{id}`` from asyncio clients sharing one
   ``httpx.AsyncClient``.
2. Floor: the same pairs against the same MongoDB and Redis servers, but only the storage operations
   a create+terminate performs (``FLOOR_OPERATIONS``, printed), done directly with
   ``pymongo.AsyncMongoClient`` and ``redis.asyncio`` (the real ``RedisCoordination`` for the Lua
   scripts and the stream) in a scratch database with the service's indexes. The servers' own
   counters (MongoDB ``opcounters``, Redis ``commandstats``) are printed per pair for both sides, to
   show the floor does what the service does (plus the service's background loops, a few hundredths).

Both sides run ``--serial-pairs`` with one client (the cost of one call, no queueing), then
``--pairs`` with ``--concurrency`` clients, each in alternating rounds (service, floor, floor,
service, ...) after a warm-up, so a drift of the machine or of the database over the run (the
embedded SecantusDB gets slower as writes accumulate) weighs on both alike. The ratio service/floor
is what HTTP, JSON, validation, auth and the controller's logic cost on top of the storage round
trips. Everything (client, service, MongoDB, Redis) shares this machine's cores, so the figures are
relative: compare the rows of one run, not runs across machines. The default size takes about two
to three minutes on 2 cores with the embedded stack (it is SecantusDB that sets the pace).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import secrets
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from common.backends import create_mongo_client, create_redis_client
from security.jwt_auth import mint_token

REPO_ROOT = Path(__file__).resolve().parents[2]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))  # run as a script: tests.support lives in the checkout

from tests.performance.session_floor import (  # noqa: E402
    COUNTER_NOISE,
    FLOOR_OPERATIONS,
    SERVER_CAPACITY,
    FloorTarget,
)
from tests.support.bench import bench_backends, bench_service_env  # noqa: E402
from tests.support.measuring import CpuMeter, percentile  # noqa: E402
from tests.support.process import (  # noqa: E402
    ServiceProcess,
    descendants,
    entrypoint_argv,
    free_port,
)


# Measuring ----------------------------------------------------------------------------------
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


# The two targets ----------------------------------------------------------------------------
class ServiceTarget:
    """Pairs through the running service's HTTP API (one ``httpx.AsyncClient`` for every worker)."""

    name = "service (HTTP)"

    def __init__(self, base_url: str, secret: str, concurrency: int) -> None:
        def bearer(subject: str, role: str) -> dict[str, str]:
            value = mint_token(
                secret=secret, subject=subject, roles=[role], audience="rdp-controller", ttl_seconds=3600
            )
            return {"Authorization": f"Bearer {value}"}

        self.operator, self.service = bearer("bench-ops", "operator"), bearer("bench-session-api", "service")
        # Idle connections are dropped by the client before uvicorn's 5 s keep-alive timeout closes them:
        # else a request sent on a connection the server is closing fails (between rounds, mostly).
        limits = httpx.Limits(
            max_connections=concurrency, max_keepalive_connections=concurrency, keepalive_expiry=2.0
        )
        self.client = httpx.AsyncClient(base_url=base_url, limits=limits, timeout=60.0)

    async def __aenter__(self) -> ServiceTarget:
        registered = await self.client.post(
            "/api/v1/servers",
            headers=self.operator,
            json={"name": "bench-host", "address": "127.0.0.1", "port": 9, "capacity": SERVER_CAPACITY},
        )
        if registered.status_code != 201:
            await self.client.aclose()
            raise RuntimeError(f"register server: {registered.status_code} {registered.text}")
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.client.aclose()

    async def one_pair(self, worker: int) -> tuple[float, float]:
        started = time.perf_counter()
        created = await self.client.post(
            "/api/v1/sessions", headers=self.service, json={"user_id": f"bench-{worker}"}
        )
        middle = time.perf_counter()
        if created.status_code != 201:
            raise RuntimeError(f"create: {created.status_code} {created.text[:300]}")
        session_id = created.json()["session_id"]
        ended = await self.client.delete(f"/api/v1/sessions/{session_id}", headers=self.service)
        if ended.status_code != 200 or ended.json()["status"] != "terminated":
            raise RuntimeError(f"terminate: {ended.status_code} {ended.text[:300]}")
        return (middle - started) * 1000, (time.perf_counter() - middle) * 1000


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
    routes = (
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


async def drop_service_data(mongodb_url: str, redis_url: str, tag: str) -> None:
    """External backends only: remove what the service wrote."""
    mongo = create_mongo_client(mongodb_url, timeout_seconds=10.0, app_name="bench-cleanup")
    redis = create_redis_client(redis_url, timeout_seconds=10.0)
    try:
        await mongo.drop_database(f"bench_{tag}")
        keys = [key async for key in redis.scan_iter(match=f"bench{tag}:*", count=500)]
        if keys:
            await redis.delete(*keys)
    finally:
        await redis.aclose()
        await mongo.close()


# Report -------------------------------------------------------------------------------------
GOALS = (  # issue 13; printed beside the figures, never asserted
    ("service CPU ms per create+terminate pair (c={c})", "<=", 3.5),
    ("service/floor pairs/s, one client", ">=", 0.8),
    ("service CPU ms per GET /api/v1/sessions/{{id}}", "<=", 1.0),
    ("service CPU ms per GET /health", "<=", 0.3),
)


def goal_lines(
    results: list[tuple[int, Result, Result]], reads: list[Reads], args: argparse.Namespace
) -> list[str]:
    _clients, loaded, _floor = results[-1]
    serial = [(service, floor) for clients, service, floor in results if clients == 1]
    by_route = {r.route: r.cpu_ms for r in reads}
    values = [
        loaded.cpu["service"] * 1000 / loaded.pairs if "service" in loaded.cpu else None,
        serial[0][0].pairs_per_second / serial[0][1].pairs_per_second if serial else None,
        by_route.get("GET /api/v1/sessions/{id}"),
        by_route.get("GET /health"),
    ]
    lines = ["goals (issue 13), from this run:"]
    for (name, sense, goal), value in zip(GOALS, values, strict=True):
        label = name.format(c=args.concurrency)
        if value is None:
            lines.append(f"  {label:<52} {'-':>8}   goal {sense} {goal:g}   not measured")
            continue
        met = value <= goal if sense == "<=" else value >= goal
        lines.append(f"  {label:<52} {value:>8.2f}   goal {sense} {goal:g}   {'met' if met else 'NOT met'}")
    return lines


def report(
    results: list[tuple[int, Result, Result]],
    reads: list[Reads],
    args: argparse.Namespace,
    backends: str,
    wall: float,
) -> list[str]:
    lines: list[str] = []

    def print(text: str = "") -> None:  # the report is kept, then printed and written
        lines.append(text)

    def row(name: str, result: Result) -> str:
        latencies = [percentile(v, q) for v in (result.create_ms, result.terminate_ms) for q in (0.5, 0.99)]
        cells = "".join(f"{value:>11.2f}" for value in latencies)
        return f"{name:<22}{result.pairs_per_second:>9.1f}{cells}{result.seconds:>9.2f}"

    def ratio(name: str, a: Result, b: Result) -> str:
        cells = [a.pairs_per_second / b.pairs_per_second]
        for mine, theirs in ((a.create_ms, b.create_ms), (a.terminate_ms, b.terminate_ms)):
            cells += [percentile(mine, q) / percentile(theirs, q) for q in (0.5, 0.99)]
        widths = (9, 11, 11, 11, 11)
        return f"{name:<22}" + "".join(
            f"{'x' + format(v, '.2f'):>{w}}" for v, w in zip(cells, widths, strict=True)
        )

    order = " ".join("S F" if n % 2 == 0 else "F S" for n in range(args.rounds))
    print(
        f"pairs per side: {args.pairs} by {args.concurrency} clients in rounds {order} (S service, F floor);"
    )
    print(f"  {args.serial_pairs} by 1 client (rounds S F F S); each after {args.warmup} warm-up pairs")
    print(f"backends: {backends}; service workers: {args.workers}")
    print("floor = the storage operations of one create + one terminate, done directly, in this order:")
    for phase, what, _op in FLOOR_OPERATIONS:
        print(f"  {phase:<10} {what}")
    print()
    heads = ("create p50", "create p99", "term p50", "term p99")
    print(f"{'':<22}{'pairs/s':>9}" + "".join(f"{head:>11}" for head in heads) + f"{'time s':>9}")
    for clients, service, floor in results:
        print(row(f"service (HTTP)  c={clients}", service))
        print(row(f"floor (direct)  c={clients}", floor))
        print(ratio(f"service/floor   c={clients}", service, floor))
    print("(latencies in ms; service/floor: throughput below 1 and latency above 1 are the overhead)")
    print()
    print("operations per pair, from the servers' own counters over the timed rounds (service/floor):")
    _clients, service, floor = results[-1]
    names = sorted(name for name in {*service.operations, *floor.operations} if not name.startswith("redis "))
    names += sorted(name for name in {*service.operations, *floor.operations} if name.startswith("redis "))
    cells = []
    for name in names:
        mine, theirs = (r.operations.get(name, 0) / r.pairs for r in (service, floor))
        if mine >= 0.005 or theirs >= 0.005:
            cells.append(f"{name} {mine:.2f}/{theirs:.2f}")
    line = " "
    for cell in cells:  # wrapped at about 100 characters
        if len(line) + len(cell) > 100:
            print(line)
            line = " "
        line += " " + cell
    print(line)
    for clients, service, floor in results:
        names = sorted({*service.cpu, *floor.cpu})
        if not names:
            continue
        print()
        print(f"CPU ms per pair (c={clients})".ljust(26) + "".join(f"{name:>13}" for name in names))
        for label, result in (("  service rounds", service), ("  floor rounds", floor)):
            used = "".join(
                f"{result.cpu[name] * 1000 / result.pairs:>13.2f}" if name in result.cpu else f"{'-':>13}"
                for name in names
            )
            print(f"{label:<26}{used}")
    if reads:
        print()
        print(
            f"reads, {READ_CONCURRENCY} clients".ljust(34)
            + f"{'requests':>10}{'req/s':>10}{'service CPU ms/req':>20}"
        )
        for r in reads:
            print(f"  {r.route:<32}{r.requests:>10}{r.requests / r.seconds:>10.1f}{r.cpu_ms:>20.3f}")
    print()
    for line in goal_lines(results, reads, args):
        print(line)
    print(f"\nwall time s: {wall:.1f}   cores: {os.cpu_count()}")
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pairs", type=int, default=None, help="timed create+terminate pairs (default 1000)")
    parser.add_argument(
        "--serial-pairs",
        type=int,
        default=None,
        help="pairs with one client, per side (default 100; 0: none)",
    )
    parser.add_argument("--concurrency", type=int, default=None, help="concurrent clients (default 50)")
    parser.add_argument(
        "--warmup", type=int, default=None, help="untimed pairs first (default 2 x concurrency)"
    )
    parser.add_argument(
        "--rounds", type=int, default=2, help="rounds per side, alternated service/floor, floor/service ..."
    )
    parser.add_argument(
        "--reads", type=int, default=None, help="GET session and GET /health requests each (default 2000)"
    )
    parser.add_argument(
        "--workers", type=int, default=1, help="the service's worker processes (RDP_CONTROLLER_WORKERS)"
    )
    parser.add_argument(
        "--profile",
        action="store_true",
        help="record the service with py-spy (its workers too) into a flame graph beside the figures",
    )
    parser.add_argument(
        "--out-dir",
        type=Path,
        default=REPO_ROOT / ".build" / "bench",
        help="where the figures (bench_sessions.txt) and the flame graph go (default .build/bench)",
    )
    parser.add_argument("--quick", action="store_true", help="CI size: 200 pairs, 20 clients, 40 serial")
    args = parser.parse_args(argv)
    if args.reads is None:
        args.reads = 400 if args.quick else 2000
    args.pairs = args.pairs or (200 if args.quick else 1000)
    if args.serial_pairs is None:
        args.serial_pairs = 40 if args.quick else 100
    args.concurrency = args.concurrency or (20 if args.quick else 50)
    args.warmup = args.warmup if args.warmup is not None else 2 * args.concurrency
    if (
        args.pairs < args.rounds
        or args.concurrency < 1
        or args.rounds < 1
        or args.warmup < 0
        or args.serial_pairs == 1
        or args.serial_pairs < 0
        or args.reads < 0
        or args.workers < 1
    ):
        parser.error(
            "--concurrency and --rounds must be at least 1, --pairs at least --rounds, --warmup at least 0,"
            " --serial-pairs 0 or at least 2, --reads at least 0, --workers at least 1"
        )

    started = time.perf_counter()
    tag = uuid.uuid4().hex[:10]
    with contextlib.ExitStack() as resources:
        backends = bench_backends(resources)
        mongodb_url, redis_url = backends.mongodb_url, backends.redis_url
        workdir = Path(resources.enter_context(tempfile.TemporaryDirectory(prefix="bench-sessions-")))
        port, secret = free_port(), secrets.token_urlsafe(48)
        env = bench_service_env(
            port,
            backends,
            tag,
            secret,
            RDP_CONTROLLER_RELAY_PORT="0",  # no client connects: direct mode (bench_relay.py: the relay)
            RDP_CONTROLLER_VALIDATE_RESPONSES="false",  # production's setting (the test suite turns it on)
            RDP_CONTROLLER_WORKERS=str(args.workers),
            # Queueing at c=50 on the embedded SecantusDB reaches seconds: a MongoDB operation timeout
            # (timeoutMS) of 2 s would turn the slow tail into 503s rather than measure it.
            BACKEND_TIMEOUT_SECONDS="30",
        )
        service = ServiceProcess(entrypoint_argv(), env=env, port=port, log_path=workdir / "service.log")
        resources.enter_context(service)
        args.out_dir.mkdir(parents=True, exist_ok=True)
        flame = args.out_dir / "bench_sessions-flame.svg"
        try:
            service.wait_for_health(timeout=60.0, want="healthy")
            pids = {**backend_pids(), "service": service.pid, "bench client": os.getpid()}
            targets = (
                ServiceTarget(service.base_url, secret, args.concurrency),
                FloorTarget(mongodb_url, redis_url, tag),
            )
            with profiled(service.pid, flame) if args.profile else contextlib.nullcontext():
                results, reads = asyncio.run(measure(*targets, args, pids))
        except (RuntimeError, httpx.HTTPError, ExceptionGroup) as exc:
            first = exc.exceptions[0] if isinstance(exc, ExceptionGroup) else exc
            request = getattr(first, "_request", None)  # httpx errors carry the request they failed on
            where = f" on {request.method} {request.url}" if request is not None else ""
            print(f"benchmark failed{where}: {first!r}\n{service.log_tail(40)}", file=sys.stderr)
            return 1
        service.stop()
        if backends.external:
            asyncio.run(drop_service_data(mongodb_url, redis_url, tag))
    lines = report(results, reads, args, backends.description, time.perf_counter() - started)
    if args.profile:
        lines.append(f"flame graph of the service (py-spy, every worker): {flame}")
    figures = args.out_dir / "bench_sessions.txt"
    lines.append(f"these figures: {figures}")
    figures.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


@contextlib.contextmanager
def profiled(pid: int, flame: Path) -> Iterator[None]:
    """``py-spy record`` of the service and its worker processes while the block runs; a flame graph."""
    spy = Path(sys.executable).with_name("py-spy")
    command = [str(spy if spy.exists() else "py-spy"), "record", "--pid", str(pid), "--subprocesses"]
    command += ["--nonblocking", "--rate", "200", "--format", "flamegraph", "--output", str(flame)]
    log = flame.with_suffix(".log")
    with log.open("wb") as errors:
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=errors)
    try:
        time.sleep(1.0)  # attached before the first timed request
        if process.poll() is not None:
            raise RuntimeError(
                f"py-spy could not attach: {process.stderr.read().decode() if process.stderr else ''}"
            )
        yield
    finally:
        process.send_signal(signal.SIGINT)  # py-spy writes the flame graph on SIGINT
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()


if __name__ == "__main__":
    sys.exit(main())
