"""storage/warm_pool.py without a server: a stock slot is held once, a claim takes the oldest ready
entry out of its slot, the sweep's queries find what is stale, and entries are counted by state."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any, cast

from pymongo.errors import DuplicateKeyError

from rdp_controller.storage.warm_pool import WarmPoolRepository
from tests.unit.rdp_controller.storage.fake_mongo import FakeCollection, Rows

NOW = datetime(2030, 1, 1, tzinfo=UTC)
EARLIER = NOW - timedelta(minutes=10)


def repository() -> tuple[WarmPoolRepository, FakeCollection]:
    collection = FakeCollection("warm_pool")
    return WarmPoolRepository(cast(Any, collection)), collection


async def test_a_slot_is_reserved_once() -> None:
    entries, collection = repository()
    collection.answer("insert_one", None, DuplicateKeyError("slot_unique"))
    assert await entries.reserve_slot("e1", 0, now=NOW)
    assert not await entries.reserve_slot("e2", 0, now=NOW)
    document = collection.called("insert_one")[0].args[0]
    assert document["slot"] == 0 and document["state"] == "provisioning" and document["on_demand"] is False


async def test_an_on_demand_entry_holds_no_slot() -> None:
    entries, collection = repository()
    await entries.add_on_demand("e1", session_id="s1", user_id="alice", now=NOW)
    document = collection.called("insert_one")[0].args[0]
    assert "slot" not in document and document["on_demand"] is True and document["session_id"] == "s1"


async def test_a_claim_takes_the_oldest_ready_entry_out_of_its_slot() -> None:
    entries, collection = repository()
    await entries.claim_ready(session_id="s1", user_id="alice", now=NOW)
    (call,) = collection.called("find_one_and_update")
    query, update = call.args
    assert query == {"state": "ready"} and call.kwargs["sort"] == [("ready_at", 1)]
    assert update["$set"]["state"] == "claimed" and update["$set"]["session_id"] == "s1"
    assert update["$unset"] == {"slot": ""}


async def test_a_failed_or_releasing_entry_leaves_its_slot() -> None:
    entries, collection = repository()
    await entries.mark_failed("e1", "ServiceError: HTTP 503", now=NOW)
    await entries.mark_releasing("e2", "idle", now=NOW)
    failed, releasing = collection.called("update_one")
    assert failed.args[1]["$set"]["state"] == "failed" and failed.args[1]["$unset"] == {"slot": ""}
    assert releasing.args[0] == {"entry_id": "e2", "state": {"$ne": "released"}}
    assert releasing.args[1]["$set"]["release_reason"] == "idle" and releasing.args[1]["$unset"] == {
        "slot": ""
    }


async def test_the_sweep_finds_idle_stock_old_claims_stuck_releases_and_abandoned_provisioning() -> None:
    entries, collection = repository()
    await entries.idle_stock(ready_before=EARLIER, size=2)
    await entries.claimed_before(EARLIER)
    await entries.releasing_since(EARLIER)
    await entries.abandon_provisioning(created_before=EARLIER)
    idle, claimed, releasing = (call.args[0] for call in collection.called("find"))
    assert idle == {"state": "ready", "$or": [{"ready_at": {"$lte": EARLIER}}, {"slot": {"$gte": 2}}]}
    assert claimed == {"state": "claimed", "claimed_at": {"$lte": EARLIER}}
    assert releasing == {"state": "releasing", "updated_at": {"$lte": EARLIER}}
    (abandon,) = collection.called("update_many")
    assert abandon.args[0] == {"state": "provisioning", "created_at": {"$lte": EARLIER}}
    assert abandon.args[1]["$set"]["state"] == "failed" and abandon.args[1]["$unset"] == {"slot": ""}


async def test_a_servers_entry_is_found_unless_released() -> None:
    entries, collection = repository()
    assert await entries.unreleased_of_server("srv-1") is None
    assert collection.called("find_one")[0].args[0] == {"server_id": "srv-1", "state": {"$ne": "released"}}


async def test_counts_name_every_state() -> None:
    entries, collection = repository()
    collection.answer("aggregate", Rows([{"_id": "ready", "count": 3}]))
    counts = await entries.counts()
    assert counts == {"provisioning": 0, "ready": 3, "claimed": 0, "releasing": 0, "released": 0, "failed": 0}
