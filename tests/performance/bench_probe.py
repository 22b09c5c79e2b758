"""Benchmark: fan-out of protocol.probe.probe_many over many loopback RDP endpoints.

Starts N asyncio servers on 127.0.0.1 (ephemeral ports) in this process. Each answers the
X.224 Connection Request with an RDP_NEG_RSP selecting standard RDP security (no TLS), so
the figures measure the probe's connect / negotiate / close path and its concurrency, not
cryptography. Client and servers share one event loop and one core, so the absolute numbers
are a floor for a real fleet, where the network dominates.

    .venv/bin/python tests/performance/bench_probe.py [--endpoints 500] [--concurrency 100] [--delay-ms 0]

With ``--delay-ms 0`` (the default) everything is CPU on one loop and the ratio total/single
is close to the number of endpoints: on loopback there is no waiting for concurrency to hide.
``--delay-ms 20`` makes every endpoint wait before it answers, like a host across a network,
and shows the fan-out: the total approaches endpoints / concurrency x single.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import resource
import statistics
import sys
import time
from collections.abc import Sequence

from protocol.negotiation import NegotiationResponse, SecurityProtocol
from protocol.probe import probe, probe_many
from protocol.tpkt import TPKT_HEADER_LENGTH
from protocol.x224 import encode_connection_confirm

CONFIRM = encode_connection_confirm(NegotiationResponse(SecurityProtocol.PROTOCOL_RDP))


class Endpoints:
    """N loopback RDP negotiation endpoints and their connection handlers."""

    def __init__(self, delay_s: float) -> None:
        self.delay_s = delay_s
        self.servers: list[asyncio.Server] = []
        self.handlers: set[asyncio.Task[None]] = set()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self.handlers.add(task)
        try:
            header = await reader.readexactly(TPKT_HEADER_LENGTH)
            await reader.readexactly(int.from_bytes(header[2:4], "big") - TPKT_HEADER_LENGTH)
            if self.delay_s:
                await asyncio.sleep(self.delay_s)
            writer.write(CONFIRM)
            await writer.drain()
            await reader.read()  # until the probe closes
        except (asyncio.IncompleteReadError, ConnectionError):
            pass  # the probe went away first: nothing to answer
        except asyncio.CancelledError:
            pass  # close() gave up waiting; a cancelled handler makes 3.11's stream callback log an error
        finally:
            writer.transport.abort()
            if task is not None:
                self.handlers.discard(task)

    async def start(self, count: int) -> list[tuple[str, int]]:
        for _ in range(count):
            server = await asyncio.start_server(self._handle, "127.0.0.1", 0, backlog=512)
            self.servers.append(server)
        return [("127.0.0.1", server.sockets[0].getsockname()[1]) for server in self.servers]

    async def close(self) -> None:
        for server in self.servers:
            server.close()
        if self.handlers:  # the last probes' FINs are still on their way: let the handlers see them
            await asyncio.wait(list(self.handlers), timeout=5.0)
        for task in list(self.handlers):
            task.cancel()
        await asyncio.gather(*self.handlers, return_exceptions=True)
        for server in self.servers:
            await server.wait_closed()


def raise_fd_limit(needed: int) -> tuple[int, int]:
    """Raise the soft RLIMIT_NOFILE to ``needed`` (capped by the hard limit); return (soft, hard)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < needed:
        target = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        soft = target
    return soft, hard


async def run(args: argparse.Namespace) -> int:
    endpoint_count: int = args.endpoints
    concurrency: int = args.concurrency
    timeout: float = args.timeout
    endpoints = Endpoints(args.delay_ms / 1000.0)
    try:
        targets = await endpoints.start(endpoint_count)
        host, port = targets[0]
        await probe(host, port, timeout=timeout)  # warm-up
        singles = []
        for _ in range(args.samples):
            started = time.perf_counter()
            result = await probe(host, port, timeout=timeout)
            singles.append((time.perf_counter() - started) * 1000.0)
            if not result.ok:
                print(f"single probe failed: {result}", file=sys.stderr)
                return 1
        await probe_many(targets, concurrency=concurrency, timeout=timeout)  # warm-up
        totals = []
        for _ in range(args.rounds):
            started = time.perf_counter()
            results = await probe_many(targets, concurrency=concurrency, timeout=timeout)
            totals.append((time.perf_counter() - started) * 1000.0)
            failed = [r for r in results if not r.ok]
            if failed:
                print(f"{len(failed)} probes failed, first: {failed[0]}", file=sys.stderr)
                return 1
    finally:
        await endpoints.close()
    single = statistics.median(singles)
    total = statistics.median(totals)
    rounds = ", ".join(f"{t:.1f}" for t in totals)
    print(f"endpoints:               {endpoint_count}")
    print(f"concurrency:             {concurrency}")
    print(f"server delay ms:         {args.delay_ms:g}")
    print(f"single probe median ms:  {single:.3f}  (of {args.samples})")
    print(f"total ms for {endpoint_count}:        {total:.1f}  (median of {args.rounds}: {rounds})")
    print(f"ratio total/single:      {total / single:.1f}  (sequential would be {endpoint_count})")
    print(f"probes/s:                {endpoint_count / (total / 1000.0):.0f}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--endpoints", type=int, default=500)
    parser.add_argument("--concurrency", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=3, help="timed probe_many rounds (median reported)")
    parser.add_argument("--samples", type=int, default=25, help="sequential single probes (median reported)")
    parser.add_argument("--timeout", type=float, default=5.0)
    parser.add_argument(
        "--delay-ms",
        type=float,
        default=0.0,
        help="simulated server think time before the confirm (0: loopback only, CPU bound)",
    )
    args = parser.parse_args(argv)
    if args.endpoints < 1 or args.concurrency < 1 or args.rounds < 1 or args.samples < 1 or args.delay_ms < 0:
        parser.error("--endpoints, --concurrency, --rounds and --samples must be at least 1, --delay-ms >= 0")
    # Listening sockets + a client and a server socket per probe in flight + slack.
    needed = args.endpoints + 2 * min(args.concurrency, args.endpoints) + 256
    soft, hard = raise_fd_limit(needed)
    if soft != resource.RLIM_INFINITY and soft < needed:
        parser.error(f"need {needed} file descriptors, the hard limit is {hard}")
    started = time.perf_counter()
    with contextlib.suppress(KeyboardInterrupt):
        code = asyncio.run(run(args))
        print(f"wall time s:             {time.perf_counter() - started:.1f}")
        return code
    return 130


if __name__ == "__main__":
    sys.exit(main())
