"""Faults under load: backends and replicas killed, flushed and hung while clients create and terminate.

Two replicas share one MongoDB-compatible server and one Redis; a host of capacity 20 gets more
demand than it holds (10 users x 3 sessions). For each fault, while the load runs, two samplers
count the host's live sessions in MongoDB and its live leases in Redis every 100 ms. Then:

- never more live sessions (MongoDB) or leases (Redis) than the capacity, nor per user than the limit;
- no 5xx other than the documented 503s, no answer slower than 3 x BACKEND_TIMEOUT_SECONDS;
- no session lost: every 201 is in MongoDB afterwards;
- no change without its event, exactly once;
- one reconcile period after the orphan grace, the lease sets are exactly the live sessions (no lease
  without a live session, none missing);
- the limits are exact afterwards: the host takes exactly 20 sessions, a user exactly 3.

The figures of each fault are printed at the end of the run (``pytest tests/faults -s`` shows them
as they come too).
"""

from __future__ import annotations

import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from pymongo import MongoClient
from redis import Redis

from common.devstack import DevStackError
from tests.conftest import unavailable
from tests.faults.harness import (
    BACKEND_TIMEOUT,
    CAPACITY,
    DOCUMENTED_503,
    FIGURES,
    LEADER_LOCK,
    LEASE_TTL,
    LIVE,
    ORPHAN_GRACE,
    RECONCILE_INTERVAL,
    SLOWEST_ALLOWED,
    START_TIMEOUT,
    USER_LIMIT,
    USERS,
    Backends,
    Figures,
    Load,
    Replicas,
    Sampler,
    running,
)
from tests.support.service_api import OPERATOR, SERVICE

pytestmark = pytest.mark.faults

STEADY_SECONDS = 3.0  # load before the fault
AFTER_SECONDS = 3.0  # load after the first 201 that follows the fault
RECOVERY_BOUND = 30.0
SETTLE_SLACK = 2.0


@dataclass
class Tier:
    backends: Backends
    replicas: Replicas
    server_id: str
    mongo: MongoClient[dict[str, Any]]

    @property
    def sessions(self) -> Any:
        return self.mongo[self.replicas.database]["rdp_sessions"]

    @property
    def events(self) -> Any:
        return self.mongo[self.replicas.database]["rdp_session_events"]

    def redis(self) -> Redis:
        return Redis.from_url(self.backends.redis_url, socket_timeout=2, decode_responses=True)

    def ensure_replicas(self) -> None:
        for index, process in enumerate(self.replicas.processes):
            if not process.running:
                self.replicas.replace(index)


@pytest.fixture(scope="module")
def tier(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Tier]:
    workdir: Path = tmp_path_factory.mktemp("faults")
    try:
        backends = Backends(workdir).start()
    except (DevStackError, RuntimeError, OSError) as exc:
        unavailable(f"fault tier backends: {exc}")
        raise
    replicas = Replicas(backends, workdir)
    mongo: MongoClient[dict[str, Any]] = MongoClient(backends.mongodb_url, timeoutMS=5000)
    try:
        replicas.start()
        # A replica answers /health 200 (degraded) before its bootstrap has synced the static servers.
        replicas.processes[0].wait_for_health(timeout=START_TIMEOUT, want="healthy")
        servers = httpx.get(f"{replicas.urls()[0]}/api/v1/servers", headers=OPERATOR, timeout=10).json()
        (server_id,) = [s["server_id"] for s in servers["items"] if s["name"] == "fault-host"]
        yield Tier(backends, replicas, server_id, mongo)
    finally:
        mongo.close()
        replicas.stop()
        backends.stop()


# The faults: each acts on the tier while the load runs and returns when the fault has ended.
def redis_killed_and_restarted_empty(tier: Tier) -> None:
    tier.backends.kill("Redis")
    time.sleep(1.0)
    tier.backends.restart("Redis")


def redis_flushall(tier: Tier) -> None:
    tier.backends.flushall()


def mongo_killed_and_restarted(tier: Tier) -> None:
    tier.backends.kill("SecantusDB")
    time.sleep(1.0)
    tier.backends.restart("SecantusDB")


def mongo_down_longer_than_the_lease_ttl(tier: Tier) -> None:
    tier.backends.kill("SecantusDB")
    time.sleep(LEASE_TTL + 3)
    tier.backends.restart("SecantusDB")


def mongo_hung_sigstop_then_sigcont(tier: Tier) -> None:
    tier.backends.pause("SecantusDB")
    time.sleep(4 * BACKEND_TIMEOUT)
    tier.backends.resume("SecantusDB")


def replica_sigkilled_under_load(tier: Tier) -> None:
    # Under load a replica may be between a slot reservation and its insert: its orphan leases must
    # go (the tier checks the lease sets are exact afterwards). Killing at that exact point cannot be
    # timed from outside, so the lease it would leave is also reserved, as its reserve script would
    # (only into a free slot: the replica left alive frees some as the load terminates sessions).
    tier.replicas.sigkill(0)
    ghost = str(uuid.uuid4())
    keys = [f"{tier.replicas.prefix}:slots:{tier.server_id}", f"{tier.replicas.prefix}:user:fault-ghost"]
    with tier.redis() as redis:
        for _ in range(100):
            now = int(time.time() * 1000)
            if redis.eval(RESERVE_GHOST, 2, *keys, now, now + LEASE_TTL * 1000, CAPACITY, ghost):
                GHOSTS.append((ghost, time.monotonic()))
                return
            time.sleep(0.05)
    raise AssertionError("no free slot for the crashed replica's lease within 5 s")


# What the reserve script does (storage/redis.py), for the lease of the killed replica.
RESERVE_GHOST = """
if redis.call('ZCOUNT', KEYS[1], ARGV[1], '+inf') >= tonumber(ARGV[3]) then
  return 0
end
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[4])
redis.call('ZADD', KEYS[2], ARGV[2], ARGV[4])
return 1
"""


GHOSTS: list[tuple[str, float]] = []  # orphan leases written by the replica-kill fault, and when

FAULTS: list[Callable[[Tier], None]] = [
    redis_killed_and_restarted_empty,
    redis_flushall,
    mongo_killed_and_restarted,
    mongo_down_longer_than_the_lease_ttl,
    mongo_hung_sigstop_then_sigcont,
    replica_sigkilled_under_load,
]


@pytest.mark.parametrize("fault", FAULTS, ids=[f.__name__ for f in FAULTS])
def test_limits_hold_and_nothing_is_lost(tier: Tier, fault: Callable[[Tier], None]) -> None:
    tier.ensure_replicas()
    figures = Figures(fault.__name__)
    FIGURES.append(figures)
    load = Load(urls=tier.replicas.urls)
    sampler = Sampler(tier.backends, tier.replicas.database, tier.replicas.prefix, tier.server_id)
    test_started = time.monotonic()
    with running(load, sampler):
        time.sleep(STEADY_SECONDS)
        began = time.monotonic()
        fault(tier)
        ended = time.monotonic()
        figures.fault_seconds = ended - began
        while time.monotonic() - ended < RECOVERY_BOUND:
            firsts = [a for a in load.since(ended) if a.status == 201]
            if firsts:
                figures.recovery = firsts[0].started + firsts[0].seconds - ended
                break
            time.sleep(0.05)
        for ghost, written in GHOSTS:  # under load still: when does the orphan lease go?
            gone = wait_until_unleased(
                tier, ghost, bound=ORPHAN_GRACE + 2 * RECONCILE_INTERVAL + LEADER_LOCK + 5
            )
            figures.note = (
                f"orphan lease gone {gone - written:.1f} s after the kill"
                if gone is not None
                else "orphan lease NOT gone"
            )
        GHOSTS.clear()
        time.sleep(AFTER_SECONDS)
    stopped = time.monotonic()

    answers = load.since(test_started)
    figures.requests = len(answers)
    figures.statuses = Counter(
        f"{a.status} {a.code}".strip() if a.status is not None and a.status >= 300 else str(a.status)
        for a in answers
    )
    answered = [a for a in answers if a.status is not None and a.status > 0]
    figures.slowest = max((a.seconds for a in answered), default=0.0)
    figures.mongo_max, figures.redis_max = sampler.mongo_max, sampler.redis_max
    figures.user_max = max(sampler.user_mongo_max, sampler.user_redis_max)
    figures.samples = f"{sampler.mongo_samples} MongoDB and {sampler.redis_samples} Redis samples"

    problems: list[str] = []
    problems += sorted(set(sampler.over))
    if figures.recovery is None:
        problems.append(f"no 201 within {RECOVERY_BOUND} s after the fault ended")
    for answer in answers:
        if answer.status == -1:
            problems.append(f"{answer.method} got no answer within the client's 15 s")
        elif (
            answer.status is not None
            and answer.status >= 500
            and (answer.status != 503 or answer.code not in DOCUMENTED_503)
        ):
            problems.append(f"{answer.method} answered {answer.status} {answer.code}")
        if answer.status is not None and answer.status > 0 and answer.seconds > SLOWEST_ALLOWED:
            problems.append(
                f"{answer.method} answered {answer.status} {answer.code} in {answer.seconds:.2f} s"
            )

    # Lease sets exactly the live sessions, one period after the orphan grace (plus the time a
    # standby takes to lead the reconciler when the killed replica led it).
    bound = ORPHAN_GRACE + RECONCILE_INTERVAL + SETTLE_SLACK
    if fault is replica_sigkilled_under_load:
        bound += LEADER_LOCK + RECONCILE_INTERVAL
    mismatch = ""
    while True:
        mismatch = lease_mismatch(tier)
        if not mismatch:
            figures.exact_after = time.monotonic() - stopped
            break
        if time.monotonic() - stopped > bound:
            problems.append(f"{bound:.0f} s after the load stopped the lease sets are not exact: {mismatch}")
            break
        time.sleep(0.2)

    created = dict(load.created)
    found = {
        d["session_id"] for d in tier.sessions.find({"session_id": {"$in": list(created)}}, {"session_id": 1})
    }
    lost = sorted(set(created) - found)
    if lost:
        problems.append(f"{len(lost)} sessions answered 201 are not in MongoDB: {lost[:5]}")

    # Every committed change has its event, exactly once, whatever the caller was answered.
    # (Owned by the session controller's exactly-once work, not this tier: a failure here names the
    # transitions without their event, e.g. a DELETE answered 503 whose termination committed.)
    event_problems = missing_events(tier, bound=3 * BACKEND_TIMEOUT + 2 * 0.5 + SETTLE_SLACK)
    problems += event_problems

    exact_limits = check_exact_limits(tier)
    problems += exact_limits

    for line in figures.lines():
        print(line)
    assert not problems, (
        "\n".join([*figures.lines(), "problems:", *problems[:40]]) + "\n" + tier.replicas.log_tails()
    )


def wait_until_unleased(tier: Tier, session_id: str, *, bound: float) -> float | None:
    """When ``session_id`` left the host's lease set (time.monotonic()), None if not within ``bound``."""
    started = time.monotonic()
    with tier.redis() as redis:
        while time.monotonic() - started < bound:
            if redis.zscore(f"{tier.replicas.prefix}:slots:{tier.server_id}", session_id) is None:
                return time.monotonic()
            time.sleep(0.1)
    return None


def lease_mismatch(tier: Tier) -> str:
    """'' when the Redis lease sets (server and per user) hold exactly the live sessions."""
    live = list(
        tier.sessions.find({"status": {"$in": LIVE}}, {"session_id": 1, "user_id": 1, "server_id": 1})
    )
    prefix, now = tier.replicas.prefix, int(time.time() * 1000)
    with tier.redis() as redis:
        leased = set(redis.zrangebyscore(f"{prefix}:slots:{tier.server_id}", now, "+inf"))
        wanted = {d["session_id"] for d in live if d.get("server_id") == tier.server_id}
        if leased != wanted:
            return (
                f"host: {len(leased - wanted)} leases without a live session, {len(wanted - leased)} missing"
            )
        for user in USERS:
            leased = set(redis.zrangebyscore(f"{prefix}:user:{user}", now, "+inf"))
            wanted = {d["session_id"] for d in live if d["user_id"] == user}
            if leased != wanted:
                without, missing = len(leased - wanted), len(wanted - leased)
                return f"{user}: {without} leases without a live session, {missing} missing"
    return ""


def missing_events(tier: Tier, *, bound: float) -> list[str]:
    """Each session's creation and termination events, exactly once (waits for background passes)."""
    deadline = time.monotonic() + bound
    while True:
        problems = []
        sessions = list(tier.sessions.find({}, {"session_id": 1, "status": 1}))
        counts: Counter[tuple[str, str]] = Counter(
            (e["session_id"], e["to_status"]) for e in tier.events.find({}, {"session_id": 1, "to_status": 1})
        )
        for session in sessions:
            sid, status = session["session_id"], session["status"]
            if counts[(sid, "ready")] != 1:
                problems.append(f"session {sid} ({status}) has {counts[(sid, 'ready')]} 'ready' events")
            if status == "terminated" and counts[(sid, "terminated")] != 1:
                problems.append(f"session {sid} has {counts[(sid, 'terminated')]} 'terminated' events")
        if not problems or time.monotonic() > deadline:
            return problems
        time.sleep(0.25)


def check_exact_limits(tier: Tier) -> list[str]:
    """Terminate everything, then the host takes exactly CAPACITY sessions and a user USER_LIMIT."""
    problems: list[str] = []
    base = tier.replicas.urls()[-1]
    with httpx.Client(base_url=base, headers=SERVICE, timeout=10) as client:
        terminate_all(tier, client)
        statuses = [create(client, USERS[0]) for _ in range(USER_LIMIT + 1)]
        if statuses != [201] * USER_LIMIT + [409]:
            problems.append(f"a user's creates up to its limit and one more answered {statuses}")
        placed = USER_LIMIT
        for user in USERS[1:]:
            for _ in range(2):
                if placed < CAPACITY and create(client, user) == 201:
                    placed += 1
        extra = client.post("/api/v1/sessions", json={"user_id": USERS[-1], "new_session": True})
        live = tier.sessions.count_documents({"server_id": tier.server_id, "status": {"$in": LIVE}})
        if placed != CAPACITY or live != CAPACITY:
            problems.append(f"the host took {placed} sessions ({live} live), not exactly {CAPACITY}")
        if extra.status_code != 503 or extra.json()["error"]["code"] != "NO_CAPACITY":
            problems.append(f"a create on the full host answered {extra.status_code} {extra.text[:200]}")
        terminate_all(tier, client)
    return problems


def create(client: httpx.Client, user: str) -> int:
    return client.post("/api/v1/sessions", json={"user_id": user, "new_session": True}).status_code


def terminate_all(tier: Tier, client: httpx.Client) -> None:
    for document in tier.sessions.find({"status": {"$in": LIVE}}, {"session_id": 1}):
        response = client.delete(f"/api/v1/sessions/{document['session_id']}")
        assert response.status_code == 200, response.text
    with tier.redis() as redis:
        for _ in range(50):
            if (
                redis.zcount(
                    f"{tier.replicas.prefix}:slots:{tier.server_id}", int(time.time() * 1000), "+inf"
                )
                == 0
            ):
                return
            time.sleep(0.1)
    raise AssertionError("leases left after every session was terminated")
