"""Benchmark: the RDP relay of the running service against a direct connection to the same backend.

    .venv/bin/python tests/performance/bench_relay.py [--bulk-mib 128] [--round-trips 2000]
        [--handshakes 200] [--idle 1000] [--quick]

Starts the embedded stack (SecantusDB + Redis; unless ``MONGODB_URL`` and ``REDIS_URL`` are both
set), a loopback backend standing in for an RDP host (its own process: it answers the X.224
Connection Request with a Connection Confirm, then echoes, or sinks a counted stream), and the
service as a real process (``rdp-controller/entrypoint.py``) with its relay on and the backend as
its only server. Then, side by side in one run, each figure relayed and direct:

1. bulk throughput: ``--bulk-mib`` MiB client -> backend, in alternating rounds (goal: relayed at
   least 0.8 of direct);
2. latency: ``--round-trips`` 64-byte request/response exchanges, interleaved one relayed, one
   direct (goal: at most 0.3 ms added at p50);
3. relayed handshakes per second, each with its own one-time token (TCP connect, X.224 request
   with the token, the relay redeems it, marks the session active, connects to the backend,
   forwards; the client reads the backend's confirm and closes), ``--concurrency`` at once;
4. the service's RSS per idle relayed connection with ``--idle`` of them open (goal: at most 50 KiB).

Everything shares this machine's cores (the client, the relay, the backend, MongoDB, Redis), so
the figures are relative: compare the rows of one run.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from protocol.negotiation import StandardRdpConfirm
from protocol.x224 import ConnectionRequest, encode_connection_confirm, encode_connection_request
from security.jwt_auth import mint_token

REPO_ROOT = Path(__file__).resolve().parents[2]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))  # run as a script: tests.support lives in the checkout

from tests.support.bench import bench_backends, bench_service_env  # noqa: E402
from tests.support.measuring import CpuMeter, percentile  # noqa: E402
from tests.support.process import ServiceProcess, entrypoint_argv, free_port  # noqa: E402

CHUNK = 64 * 1024
PING = b"p" * 64
CONFIRM = encode_connection_confirm(StandardRdpConfirm())
PLAIN_REQUEST = encode_connection_request(ConnectionRequest())


# The backend (an RDP host's stand-in, run as a child process) ---------------------------------
async def backend_connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        header = await reader.readexactly(4)
        await reader.readexactly(int.from_bytes(header[2:4]) - 4)
        writer.write(CONFIRM)
        mode = await reader.readexactly(1)
        if mode == b"E":  # echo
            while data := await reader.read(CHUNK):
                writer.write(data)
                await writer.drain()
        elif mode == b"S":  # sink a counted stream, then say so
            remaining = int.from_bytes(await reader.readexactly(8))
            while remaining > 0:
                data = await reader.read(min(CHUNK, remaining))
                if not data:
                    return
                remaining -= len(data)
            writer.write(b"OK")
            await writer.drain()
            await reader.read(1)
        else:  # idle: hold the connection until the client closes
            await reader.read(1)
    except (asyncio.IncompleteReadError, OSError):
        pass
    finally:
        writer.close()


async def run_backend(port: int) -> None:
    server = await asyncio.start_server(backend_connection, "127.0.0.1", port, backlog=2048)
    async with server:
        await server.serve_forever()


# The client side --------------------------------------------------------------------------------
async def open_through(port: int, token: str | None) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """Connect (to the relay with a token, or to the backend without) and read the confirm."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port, limit=CHUNK)
    if token is None:
        writer.write(PLAIN_REQUEST)
    else:
        writer.write(encode_connection_request(ConnectionRequest(routing_token=token.encode() + b"\r\n")))
    answer = await reader.readexactly(len(CONFIRM))
    if answer != CONFIRM:
        raise RuntimeError(f"unexpected confirm {answer.hex()}")
    return reader, writer


async def bulk(port: int, token: str | None, mib: int) -> float:
    """MiB/s of ``mib`` MiB sent to the backend's sink."""
    reader, writer = await open_through(port, token)
    total = mib * 1024 * 1024
    block = b"\0" * CHUNK
    started = time.perf_counter()
    writer.write(b"S" + total.to_bytes(8))
    for _ in range(total // CHUNK):
        writer.write(block)
        await writer.drain()
    if await reader.readexactly(2) != b"OK":
        raise RuntimeError("the sink did not confirm")
    seconds = time.perf_counter() - started
    writer.close()
    return mib / seconds


Connection = tuple[asyncio.StreamReader, asyncio.StreamWriter]


@dataclass
class Figures:
    bulk_mib_s: tuple[float, float] = (0.0, 0.0)  # relayed, direct
    latency_ms: tuple[list[float], list[float]] = field(default_factory=lambda: ([], []))
    handshakes_per_s: float = 0.0
    cpu_ms_per_handshake: float = 0.0
    idle_opened: int = 0
    idle_counted: int = 0
    rss_kib_per_idle: float = 0.0


async def round_trips(relayed: Connection, direct: Connection, count: int) -> tuple[list[float], list[float]]:
    """Latencies (ms) of ``count`` echo exchanges on each connection, interleaved."""
    times: tuple[list[float], list[float]] = ([], [])
    for connection in (relayed, direct):
        connection[1].write(b"E")
    for _ in range(count):
        for index, (reader, writer) in enumerate((relayed, direct)):
            started = time.perf_counter()
            writer.write(PING)
            await reader.readexactly(len(PING))
            times[index].append((time.perf_counter() - started) * 1000)
    return times


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for {pid}")


class Api:
    def __init__(self, base_url: str, secret: str) -> None:
        token = mint_token(
            secret=secret, subject="bench", roles=["service"], audience="rdp-controller", ttl_seconds=7200
        )
        self.client = httpx.AsyncClient(
            base_url=base_url, headers={"Authorization": f"Bearer {token}"}, timeout=60
        )

    async def tokens(self, count: int, concurrency: int = 16) -> list[str]:
        """A session and a connect token per connection (a newer connection takes its session over)."""
        semaphore = asyncio.Semaphore(concurrency)

        async def one(index: int) -> str:
            async with semaphore:
                body = {"user_id": f"bench-{index % 50}", "new_session": True}
                created = await self.client.post("/api/v1/sessions", json=body)
                created.raise_for_status()
                connected = await self.client.post(f"/api/v1/sessions/{created.json()['session_id']}/connect")
                connected.raise_for_status()
                return str(connected.json()["token"])

        return list(await asyncio.gather(*(one(i) for i in range(count))))


async def measure(
    args: argparse.Namespace, service: ServiceProcess, relay_port: int, backend_port: int, secret: str
) -> Figures:
    api = Api(service.base_url, secret)
    figures = Figures()
    try:
        # 1. Bulk throughput, alternating rounds.
        relayed_rates, direct_rates = [], []
        for _ in range(args.rounds):
            (token,) = await api.tokens(1)
            relayed_rates.append(await bulk(relay_port, token, args.bulk_mib))
            direct_rates.append(await bulk(backend_port, None, args.bulk_mib))
        figures.bulk_mib_s = (statistics.median(relayed_rates), statistics.median(direct_rates))

        # 2. Latency of small exchanges.
        (token,) = await api.tokens(1)
        relayed, direct = await open_through(relay_port, token), await open_through(backend_port, None)
        await round_trips(relayed, direct, 200)  # warm-up
        relayed_ms, direct_ms = await round_trips(relayed, direct, args.round_trips)
        for connection in (relayed, direct):
            connection[1].close()
        figures.latency_ms = (relayed_ms, direct_ms)

        # 3. Relayed handshakes per second (tokens issued beforehand, not timed).
        tokens = await api.tokens(args.handshakes)
        semaphore = asyncio.Semaphore(args.concurrency)

        async def handshake(token: str) -> None:
            async with semaphore:
                _, writer = await open_through(relay_port, token)
                writer.close()

        meter = CpuMeter({"service": service.pid})
        meter.start()
        started = time.perf_counter()
        await asyncio.gather(*(handshake(t) for t in tokens))
        seconds = time.perf_counter() - started
        figures.handshakes_per_s = args.handshakes / seconds
        figures.cpu_ms_per_handshake = meter.stop().get("service", 0.0) * 1000 / args.handshakes

        # 4. RSS per idle relayed connection.
        tokens = await api.tokens(args.idle + 50)
        warm = [await open_through(relay_port, t) for t in tokens[:50]]
        await asyncio.sleep(1.0)
        before = rss_kib(service.pid)
        idle = []
        for offset in range(50, len(tokens), 50):
            idle += await asyncio.gather(*(open_through(relay_port, t) for t in tokens[offset : offset + 50]))
        await asyncio.sleep(2.0)
        health = (await api.client.get("/health")).json()["components"]["relay"]
        after = rss_kib(service.pid)
        figures.idle_opened, figures.idle_counted = len(idle), health["connections"]
        figures.rss_kib_per_idle = (after - before) / len(idle)
        for _, writer in warm + idle:
            writer.close()
    finally:
        await api.client.aclose()
    return figures


def report(figures: Figures, args: argparse.Namespace, backends: str, wall: float) -> None:
    relayed_rate, direct_rate = figures.bulk_mib_s
    relayed_ms, direct_ms = figures.latency_ms
    p50 = (percentile(relayed_ms, 0.5), percentile(direct_ms, 0.5))
    p99 = (percentile(relayed_ms, 0.99), percentile(direct_ms, 0.99))
    print(f"\nbench_relay: backends {backends}; cores {os.cpu_count()}")
    print(f"{'':34}{'relayed':>12}{'direct':>12}{'ratio/added':>14}{'goal':>14}")
    print(
        f"{'bulk MiB/s (median of ' + str(args.rounds) + ')':34}{relayed_rate:>12.1f}{direct_rate:>12.1f}"
        f"{relayed_rate / direct_rate:>13.2f}x{'>= 0.8x':>14}"
    )
    print(
        f"{'round trip p50 ms':34}{p50[0]:>12.3f}{p50[1]:>12.3f}{p50[0] - p50[1]:>+13.3f} {'<= +0.3 ms':>13}"
    )
    print(f"{'round trip p99 ms':34}{p99[0]:>12.3f}{p99[1]:>12.3f}{p99[0] - p99[1]:>+13.3f}")
    print(f"{'relayed handshakes/s (c=' + str(args.concurrency) + ')':34}{figures.handshakes_per_s:>12.1f}")
    print(f"{'service CPU ms per handshake':34}{figures.cpu_ms_per_handshake:>12.2f}")
    print(f"{'RSS KiB per idle connection':34}{figures.rss_kib_per_idle:>12.1f}{'':>26}{'<= 50 KiB':>14}")
    print(
        f"  ({figures.idle_opened} idle relayed connections open, the relay counted {figures.idle_counted})"
    )
    print(f"\nwall time s: {wall:.1f}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--bulk-mib", type=int, default=None, help="MiB per bulk round (default 128)")
    parser.add_argument("--rounds", type=int, default=3, help="bulk rounds per side (default 3)")
    parser.add_argument(
        "--round-trips", type=int, default=None, help="echo exchanges per side (default 2000)"
    )
    parser.add_argument("--handshakes", type=int, default=None, help="relayed handshakes timed (default 200)")
    parser.add_argument("--concurrency", type=int, default=10, help="handshakes at once (default 10)")
    parser.add_argument("--idle", type=int, default=None, help="idle relayed connections (default 1000)")
    parser.add_argument(
        "--quick", action="store_true", help="small sizes: 32 MiB, 500 trips, 50 handshakes, 200 idle"
    )
    parser.add_argument(
        "--backend", type=int, help=argparse.SUPPRESS
    )  # internal: run the backend on this port
    args = parser.parse_args(argv)
    if args.backend:
        asyncio.run(run_backend(args.backend))
        return 0
    args.bulk_mib = args.bulk_mib or (32 if args.quick else 128)
    args.round_trips = args.round_trips or (500 if args.quick else 2000)
    args.handshakes = args.handshakes or (50 if args.quick else 200)
    args.idle = args.idle or (200 if args.quick else 1000)
    if min(args.bulk_mib, args.rounds, args.round_trips, args.handshakes, args.concurrency, args.idle) < 1:
        parser.error("every size must be at least 1")

    started = time.perf_counter()
    tag = uuid.uuid4().hex[:10]
    with contextlib.ExitStack() as resources:
        backends = bench_backends(resources)
        workdir = Path(resources.enter_context(tempfile.TemporaryDirectory(prefix="bench-relay-")))
        backend_port, relay_port, port = free_port(), free_port(), free_port()
        backend = subprocess.Popen([sys.executable, __file__, "--backend", str(backend_port)])
        resources.callback(backend.kill)
        secret = secrets.token_urlsafe(48)
        server = {"name": "bench-backend", "address": "127.0.0.1", "port": backend_port, "capacity": 10_000}
        env = bench_service_env(
            port,
            backends,
            tag,
            secret,
            RDP_CONTROLLER_RELAY_PORT=str(relay_port),
            RDP_CONTROLLER_RELAY_BIND="127.0.0.1",
            RDP_CONTROLLER_RELAY_MAX_CONNECTIONS="5000",
            RDP_CONTROLLER_SERVERS=json.dumps([server]),
        )
        service = resources.enter_context(
            ServiceProcess(entrypoint_argv(), env=env, port=port, log_path=workdir / "service.log")
        )
        try:
            service.wait_for_health(timeout=60.0, want="healthy")
            figures = asyncio.run(measure(args, service, relay_port, backend_port, secret))
        except (RuntimeError, OSError, httpx.HTTPError, asyncio.IncompleteReadError) as exc:
            print(f"benchmark failed: {exc!r}\n{service.log_tail(40)}", file=sys.stderr)
            return 1
    report(figures, args, backends.description, time.perf_counter() - started)
    return 0


if __name__ == "__main__":
    sys.exit(main())
