"""storage/redis.py without a server: the keys, what each call hands its Lua script, how the replies
are read, and the calls that need no round trip at all (a recording stand-in of the client). What the
scripts do is tested against Redis in tests/integration."""

from __future__ import annotations

import json
from collections.abc import Callable
from types import TracebackType
from typing import Any, cast

import pytest

from rdp_controller.storage.redis import (
    _BEGIN_REBUILD,
    _LOCK,
    _MARK_TRUSTED,
    _RESERVE,
    EVENT_STREAM_MAXLEN,
    Lease,
    RebuildStart,
    RedisCoordination,
    Reservation,
)

LEASE = Lease(server_id="s1", user_id="alice", session_id="sess-1")


class FakeScript:
    def __init__(self, replies: list[Any]):
        self.replies = replies
        self.calls: list[tuple[list[str], list[Any]]] = []

    async def __call__(self, *, keys: list[str], args: list[Any]) -> Any:
        self.calls.append((keys, args))
        return self.replies.pop(0)


class FakePipeline:
    def __init__(self, client: FakeRedis):
        self.client = client
        self.commands: list[tuple[str, tuple[Any, ...], dict[str, Any]]] = []

    async def __aenter__(self) -> FakePipeline:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, value: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.client.pipelines.append(self.commands)

    def __getattr__(self, command: str) -> Callable[..., None]:
        def queue(*args: Any, **kwargs: Any) -> None:
            self.commands.append((command, args, kwargs))

        return queue

    async def execute(self) -> list[Any]:
        return [self.client.pipeline_replies.pop(0) for _ in self.commands]


class FakeRedis:
    """register_script hands out FakeScripts (replies queued per script source); commands are recorded."""

    def __init__(self) -> None:
        self.scripts: dict[str, FakeScript] = {}
        self.pipelines: list[list[tuple[str, tuple[Any, ...], dict[str, Any]]]] = []
        self.pipeline_replies: list[Any] = []
        self.commands: list[tuple[str, tuple[Any, ...], dict[str, Any]]] = []

    def register_script(self, source: str) -> FakeScript:
        return self.scripts.setdefault(source, FakeScript([]))

    def pipeline(self, transaction: bool = True) -> FakePipeline:
        assert transaction is False  # replies are read one by one; nothing here needs MULTI
        return FakePipeline(self)

    async def xadd(self, *args: Any, **kwargs: Any) -> None:
        self.commands.append(("xadd", args, kwargs))


def coordination(client: FakeRedis | None = None) -> tuple[RedisCoordination, FakeRedis]:
    fake = client or FakeRedis()
    return RedisCoordination(cast(Any, fake), "rdp", lease_ttl_seconds=30), fake


def test_keys_are_under_the_prefix() -> None:
    coord, _fake = coordination()
    assert coord.key("slots", "s1") == "rdp:slots:s1"
    assert coord.lease_keys(LEASE) == ["rdp:slots:s1", "rdp:user:alice"]
    assert coord.lease_ttl_ms == 30_000


@pytest.mark.parametrize("reply", [1, -1, -2, -3])
async def test_a_reservation_names_both_sets_and_the_trust_marker(reply: int) -> None:
    coord, fake = coordination()
    fake.scripts[_RESERVE].replies.append(reply)
    assert await coord.reserve(LEASE, capacity=10, user_limit=3) is Reservation(reply)
    ((keys, args),) = fake.scripts[_RESERVE].calls
    assert keys == ["rdp:slots:s1", "rdp:user:alice", "rdp:leases:trusted"]
    now, expiry, *rest = args
    assert expiry - now == 30_000 and rest == [10, 3, "sess-1"]


@pytest.mark.parametrize(
    ("reply", "start"),
    [
        ([1, "e7"], RebuildStart(trusted=True, epoch="e7")),
        ([0, None], RebuildStart(trusted=False, epoch=None)),
    ],
)
async def test_a_rebuild_begins_with_its_own_key(reply: list[Any], start: RebuildStart) -> None:
    coord, fake = coordination()
    fake.scripts[_BEGIN_REBUILD].replies.append(reply)
    assert await coord.begin_rebuild("tok") == start
    ((keys, args),) = fake.scripts[_BEGIN_REBUILD].calls
    assert keys == ["rdp:leases:rebuild:tok", "rdp:leases:trusted", "rdp:leases:epoch"] and args == [30_000]


async def test_trust_that_would_already_have_lapsed_is_not_asked_for() -> None:
    coord, fake = coordination()
    assert await coord.mark_trusted("tok", epoch="e1", valid_until_ms=0) is False
    assert fake.scripts[_MARK_TRUSTED].calls == []
    fake.scripts[_MARK_TRUSTED].replies.append(1)
    assert await coord.mark_trusted("tok", epoch="e1", valid_until_ms=coord.new_expiry_ms()) is True
    ((_keys, (ttl_ms, epoch)),) = fake.scripts[_MARK_TRUSTED].calls
    assert 0 < ttl_ms <= 30_000 and epoch == "e1"


async def test_calls_about_nothing_make_no_round_trip() -> None:
    coord, fake = coordination()
    assert await coord.live_counts([]) == {}
    await coord.set_expiry([], 1, only_existing=True)
    expiry = await coord.renew([])
    assert expiry > 0 and fake.pipelines == []


async def test_renewing_sets_the_expiry_in_both_sets_of_each_lease() -> None:
    coord, fake = coordination()
    other = Lease(server_id="s2", user_id="bob", session_id="sess-2")
    fake.pipeline_replies = [1, 1, 1, 1]
    expiry = await coord.renew([LEASE, other])
    (commands,) = fake.pipelines
    assert commands == [
        ("zadd", ("rdp:slots:s1", {"sess-1": expiry}), {}),
        ("zadd", ("rdp:user:alice", {"sess-1": expiry}), {}),
        ("zadd", ("rdp:slots:s2", {"sess-2": expiry}), {}),
        ("zadd", ("rdp:user:bob", {"sess-2": expiry}), {}),
    ]


async def test_live_counts_count_unexpired_leases_per_server() -> None:
    coord, fake = coordination()
    fake.pipeline_replies = [2, 0]
    assert await coord.live_counts(["s1", "s2"]) == {"s1": 2, "s2": 0}
    (commands,) = fake.pipelines
    assert [(name, args[0], args[2]) for name, args, _ in commands] == [
        ("zcount", "rdp:slots:s1", "+inf"),
        ("zcount", "rdp:slots:s2", "+inf"),
    ]


async def test_a_missing_pool_version_reads_as_none() -> None:
    coord, fake = coordination()
    fake.pipeline_replies = [None, 4]
    assert await coord.pool_version_and_counts(["s1"]) == (None, {"s1": 4})


async def test_a_lock_is_held_for_its_ttl_in_milliseconds() -> None:
    coord, fake = coordination()
    fake.scripts[_LOCK].replies.extend([1, 0])
    assert await coord.hold_lock("reaper", "tok", 2.5) is True
    assert await coord.hold_lock("reaper", "tok", 2.5) is False
    assert fake.scripts[_LOCK].calls[0] == (["rdp:lock:reaper"], ["tok", 2500])


def test_lock_tokens_are_random() -> None:
    first, second = RedisCoordination.new_lock_token(), RedisCoordination.new_lock_token()
    assert first != second and len(first) == 32 and int(first, 16) >= 0


async def test_an_event_goes_to_the_capped_stream_with_its_structures_as_json() -> None:
    coord, fake = coordination()
    await coord.publish_event(
        {"type": "session.created", "session_id": "sess-1", "labels": {"gpu": "yes"}, "n": 2}
    )
    ((name, args, kwargs),) = fake.commands
    assert (name, args[0]) == ("xadd", "rdp:events")
    assert args[1] == {
        "type": "session.created",
        "session_id": "sess-1",
        "labels": '{"gpu": "yes"}',
        "n": "2",
    }
    assert json.loads(args[1]["labels"]) == {"gpu": "yes"}
    assert kwargs == {"maxlen": EVENT_STREAM_MAXLEN, "approximate": True}
