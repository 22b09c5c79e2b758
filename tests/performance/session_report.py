"""The figures of bench_sessions.py as text: the run's shape, the floor's operations, the service and
floor rows with their ratio, the operations per pair from the servers' counters, CPU per pair, the
reads, and the goals of issue 13 beside what this run measured."""

from __future__ import annotations

import argparse
import os

from tests.performance.session_floor import FLOOR_OPERATIONS
from tests.performance.session_measuring import READ_CONCURRENCY, Reads, Result
from tests.support.measuring import percentile

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
