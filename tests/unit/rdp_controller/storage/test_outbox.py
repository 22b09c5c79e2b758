"""storage/outbox.py without a server: a delivery is stored once, claimed only when due and unsent,
handed back or settled under its claim (delivered whoever holds it), and counted by status."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any, cast

from pymongo.errors import DuplicateKeyError

from rdp_controller.storage.outbox import OutboxRepository
from tests.unit.rdp_controller.storage.fake_mongo import FakeCollection, Rows

NOW = datetime(2030, 1, 1, tzinfo=UTC)
UNSENT = {"$in": ["pending", "in_flight"]}


def repository() -> tuple[OutboxRepository, FakeCollection]:
    collection = FakeCollection("integration_outbox")
    return OutboxRepository(cast(Any, collection)), collection


async def test_a_delivery_is_stored_pending_and_due_now_once() -> None:
    outbox, collection = repository()
    collection.answer("insert_one", None, DuplicateKeyError("delivery_unique"))
    payload = {"session_id": "s1"}
    for expected in (True, False):
        stored = await outbox.add(
            "session_processor", "finalize_session", payload, delivery_id="d1", order_key="s1:p", now=NOW
        )
        assert stored is expected
    document = collection.called("insert_one")[0].args[0]
    assert {key: document[key] for key in ("status", "attempts", "next_attempt_at", "order_key")} == {
        "status": "pending",
        "attempts": 0,
        "next_attempt_at": NOW,
        "order_key": "s1:p",
    }
    assert isinstance(document["seq"], int) and document["payload"] == payload


async def test_a_claim_takes_the_most_overdue_unsent_delivery_and_counts_the_attempt() -> None:
    outbox, collection = repository()
    expires = NOW + timedelta(minutes=2)
    assert await outbox.claim("t1", "rdp_monitor", now=NOW, expires=expires) is None
    (call,) = collection.called("find_one_and_update")
    query, update = call.args
    assert query == {"status": UNSENT, "next_attempt_at": {"$lte": NOW}, "peer": "rdp_monitor"}
    assert update["$set"] == {
        "status": "in_flight",
        "claim_token": "t1",
        "next_attempt_at": expires,
        "updated_at": NOW,
    }
    assert update["$inc"] == {"attempts": 1} and call.kwargs["sort"] == [("next_attempt_at", 1)]
    await outbox.claim("t2", None, now=NOW, expires=expires)
    assert "peer" not in collection.called("find_one_and_update")[1].args[0]


async def test_the_first_unsent_delivery_before_one_is_looked_up_by_its_order_key() -> None:
    outbox, collection = repository()
    await outbox.first_unsent_before({"order_key": "s1:r", "seq": 7})
    (call,) = collection.called("find_one")
    assert call.args[0] == {"order_key": "s1:r", "seq": {"$lt": 7}, "status": UNSENT}
    assert call.kwargs["sort"] == [("seq", 1)]


async def test_a_release_is_made_under_the_claim_and_may_give_the_attempt_back() -> None:
    outbox, collection = repository()
    await outbox.release("d1", "t1", {"last_error": "boom"}, now=NOW)
    await outbox.release("d1", "t1", {"next_attempt_at": NOW}, now=NOW, uncount=True)
    counted, uncounted = collection.called("update_one")
    assert counted.args[0] == {"delivery_id": "d1", "claim_token": "t1"}
    assert counted.args[1] == {
        "$set": {"status": "pending", "claim_token": None, "updated_at": NOW, "last_error": "boom"}
    }
    assert uncounted.args[1]["$inc"] == {"attempts": -1}


async def test_delivered_whoever_holds_the_claim_failed_only_under_it() -> None:
    outbox, collection = repository()
    await outbox.mark_delivered("d1", "merkle_root=ab", now=NOW)
    await outbox.mark_failed("d1", "t1", "HTTP 422", now=NOW)
    delivered, failed = collection.called("update_one")
    assert delivered.args[0] == {"delivery_id": "d1", "status": {"$ne": "delivered"}}
    assert delivered.args[1]["$set"]["note"] == "merkle_root=ab"
    assert delivered.args[1]["$set"]["delivered_at"] == NOW
    assert failed.args[0] == {"delivery_id": "d1", "claim_token": "t1"}
    assert failed.args[1]["$set"]["status"] == "failed" and failed.args[1]["$set"]["last_error"] == "HTTP 422"


async def test_counts_name_every_status() -> None:
    outbox, collection = repository()
    collection.answer("aggregate", Rows([{"_id": "failed", "count": 2}]))
    assert await outbox.counts() == {"pending": 0, "in_flight": 0, "delivered": 0, "failed": 2}


async def test_the_indexes_include_the_order_and_the_retention() -> None:
    outbox, collection = repository()
    await outbox.ensure_indexes()
    models = {
        model.document["name"]: model.document for model in collection.called("create_indexes")[0].args[0]
    }
    assert set(models) == {"delivery_unique", "due", "delivery_order", "delivered_retention"}
    assert models["delivered_retention"]["expireAfterSeconds"] == 7 * 86400
