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

This script is the command line; the parts live beside it: the floor in ``session_floor.py``, the
service side in ``session_service_target.py``, the rounds and reads in ``session_measuring.py``, the
printed figures in ``session_report.py`` (percentiles and CPU meters: ``tests/support/measuring.py``).
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
from collections.abc import Iterator, Sequence
from pathlib import Path

import httpx

from common.backends import create_mongo_client, create_redis_client

REPO_ROOT = Path(__file__).resolve().parents[2]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))  # run as a script: tests.support lives in the checkout

from tests.performance.session_floor import FloorTarget  # noqa: E402
from tests.performance.session_measuring import backend_pids, measure  # noqa: E402
from tests.performance.session_report import report  # noqa: E402
from tests.performance.session_service_target import ServiceTarget  # noqa: E402
from tests.support.bench import bench_backends, bench_service_env  # noqa: E402
from tests.support.process import (  # noqa: E402
    ServiceProcess,
    entrypoint_argv,
    free_port,
)


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
