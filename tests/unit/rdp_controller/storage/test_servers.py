"""storage/servers.py without a server: duplicates become 409s, the pool view is told of the changes
that matter and only of those, and a probe's write is conditional on what the monitor saw."""

from __future__ import annotations

from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any, cast

import pytest
from pymongo.errors import DuplicateKeyError

from common.errors import Conflict
from rdp_controller.storage.servers import ServerHealthRepository, ServerRepository
from tests.unit.rdp_controller.storage.fake_mongo import FakeCollection

CUTOFF = datetime(2026, 11, 30, tzinfo=UTC)
SERVER = {"server_id": "s1", "name": "rdp-01", "address": "10.0.0.5", "port": 3389, "state": "available"}


class Told:
    """A change listener that counts how often it was told."""

    def __init__(self) -> None:
        self.times = 0

    async def __call__(self) -> None:
        self.times += 1


def registry(collection: FakeCollection) -> tuple[ServerRepository, Told]:
    repository = ServerRepository(cast(Any, collection))
    told = Told()
    repository.change_listeners.append(told)
    return repository, told


async def test_a_registration_tells_the_listeners() -> None:
    collection = FakeCollection()
    repository, told = registry(collection)
    await repository.insert(SERVER)
    assert collection.called("insert_one")[0].args == (SERVER,) and told.times == 1


async def test_a_second_server_at_the_same_address_is_a_409_naming_it() -> None:
    collection = FakeCollection()
    collection.answer("insert_one", DuplicateKeyError("address_unique"))
    repository, told = registry(collection)
    with pytest.raises(Conflict) as caught:
        await repository.insert(SERVER)
    assert caught.value.code == "DUPLICATE_SERVER" and caught.value.details == {"field": "address"}
    assert "10.0.0.5:3389" in caught.value.message
    assert told.times == 0


async def test_an_update_stamps_the_time_and_tells_only_when_a_server_changed() -> None:
    collection = FakeCollection()
    collection.answer("find_one_and_update", None, {**SERVER, "capacity": 5})
    repository, told = registry(collection)
    assert await repository.update("gone", {"capacity": 5}) is None
    assert told.times == 0
    assert await repository.update("s1", {"capacity": 5}) == {**SERVER, "capacity": 5}
    assert told.times == 1
    query, update = collection.called("find_one_and_update")[1].args
    assert query == {"server_id": "s1"}
    assert update["$set"]["capacity"] == 5 and "updated_at" in update["$set"]


async def test_an_update_onto_another_servers_address_is_a_409() -> None:
    collection = FakeCollection()
    collection.answer("find_one_and_update", DuplicateKeyError("address_unique"))
    repository, told = registry(collection)
    with pytest.raises(Conflict) as caught:
        await repository.update("s1", {"port": 3390})
    assert caught.value.code == "DUPLICATE_SERVER" and told.times == 0


async def test_a_delete_tells_only_when_something_was_deleted() -> None:
    collection = FakeCollection()
    collection.answer("delete_one", SimpleNamespace(deleted_count=0), SimpleNamespace(deleted_count=1))
    repository, told = registry(collection)
    assert await repository.delete("gone") is False and told.times == 0
    assert await repository.delete("s1") is True and told.times == 1


# ServerHealthRepository ------------------------------------------------------------------------
def health(
    servers: FakeCollection, events: FakeCollection | None = None
) -> tuple[ServerHealthRepository, Told]:
    told = Told()
    repository = ServerHealthRepository(cast(Any, servers), cast(Any, events or FakeCollection()), told)
    return repository, told


async def test_a_probe_outcome_is_written_only_over_what_the_monitor_saw() -> None:
    servers = FakeCollection()
    repository, _told = health(servers)
    await repository.apply({**SERVER, "pinned_cert_sha256": "ab" * 32, "health_version": 7}, {"x": 1})
    await repository.apply(SERVER, {"x": 1})  # a document no probe has written yet
    seen, first_seen = (call.args[0] for call in servers.called("find_one_and_update"))
    assert seen == {
        "server_id": "s1",
        "state": "available",
        "pinned_cert_sha256": "ab" * 32,
        "health_version": 7,
    }
    assert first_seen == {
        "server_id": "s1",
        "state": "available",
        "pinned_cert_sha256": None,
        "health_version": {"$exists": False},
    }


@pytest.mark.parametrize(
    ("written", "tells"),
    [
        (None, False),  # someone else wrote first: nothing changed here
        ({**SERVER, "consecutive_successes": 3}, False),  # the figures alone leave placement's view valid
        ({**SERVER, "state": "unhealthy"}, True),
    ],
)
async def test_placement_is_told_only_of_a_new_state(written: dict[str, Any] | None, tells: bool) -> None:
    servers = FakeCollection()
    servers.answer("find_one_and_update", written)
    repository, told = health(servers)
    assert await repository.apply(SERVER, {"state": "unhealthy"}) == written
    assert told.times == (1 if tells else 0)


async def test_disabled_servers_are_not_probed() -> None:
    servers = FakeCollection()
    await health(servers)[0].probe_targets()
    query, projection = servers.called("find")[0].args
    assert query == {"state": {"$ne": "disabled"}}
    assert projection == {"_id": False, "server_id": True, "address": True, "port": True}


async def test_an_event_is_recorded_with_an_id_a_time_and_its_extra_fields() -> None:
    events = FakeCollection()
    repository, _told = health(FakeCollection(), events)
    await repository.record("s1", "state_changed", "available", "unhealthy", reason="probe_failed")
    (event,) = events.called("insert_one")[0].args
    assert {k: event[k] for k in ("server_id", "kind", "old", "new", "reason")} == {
        "server_id": "s1",
        "kind": "state_changed",
        "old": "available",
        "new": "unhealthy",
        "reason": "probe_failed",
    }
    assert len(event["event_id"]) == 36 and event["at"].tzinfo is not None


async def test_unhealthy_before_lists_the_ids() -> None:
    servers = FakeCollection(documents=[{"server_id": "s1"}, {"server_id": "s2"}])
    assert await health(servers)[0].unhealthy_before(CUTOFF) == ["s1", "s2"]
    assert servers.called("find")[0].args[0] == {
        "health_state": "unhealthy",
        "unhealthy_since": {"$lte": CUTOFF},
    }
