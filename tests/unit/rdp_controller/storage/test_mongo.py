"""storage/mongo.py without a server: MongoStore gives each repository its collection, and
ensure_indexes asks for every index the queries rely on (the retention TTL from the setting).

The outbox's own indexes are checked only as far as the queries of every version rely on them: the
outbox repository owns the rest."""

from __future__ import annotations

from typing import Any, cast

from pymongo import IndexModel

from rdp_controller.storage import documents, sessions
from rdp_controller.storage.mongo import IDEMPOTENCY_STALE_SECONDS, MongoStore, decode_cursor, encode_cursor
from tests.unit.rdp_controller.storage.fake_mongo import FakeDatabase

# Every index by collection, as (name, keys, unique); a changed index is a deliberate change here.
INDEXES = {
    documents.SESSIONS: {
        ("session_id_unique", (("session_id", 1),), True),
        ("user_status", (("user_id", 1), ("status", 1)), False),
        ("server_status", (("server_id", 1), ("status", 1)), False),
        ("status_deadline", (("status", 1), ("next_deadline", 1)), False),
        ("pending_transitions", (("pending_transitions.at", 1),), False),
        ("created_order", (("created_at", -1), ("session_id", -1)), False),
        ("idempotency_unique", (("user_id", 1), ("idempotency_key", 1)), True),
    },
    documents.EVENTS: {
        ("session_at", (("session_id", 1), ("at", 1)), False),
        ("event_id_unique", (("event_id", 1),), True),
        ("retention_ttl", (("at", 1),), False),
    },
    documents.SERVER_EVENTS: {
        ("server_at", (("server_id", 1), ("at", 1)), False),
        ("retention_ttl", (("at", 1),), False),
    },
    documents.CONNECTIONS: {
        ("connection_id_unique", (("connection_id", 1),), True),
        ("session_open", (("session_id", 1), ("closed_at", 1)), False),
        ("opened_order", (("opened_at", -1),), False),
    },
    documents.SERVERS: {
        ("server_id_unique", (("server_id", 1),), True),
        ("address_unique", (("address", 1), ("port", 1)), True),
    },
    documents.IDEMPOTENCY: {("user_key_unique", (("user_id", 1), ("key", 1)), True)},
}
# At least these on the outbox.
OUTBOX_INDEXES = {
    ("delivery_unique", (("delivery_id", 1),), True),
    ("due", (("status", 1), ("next_attempt_at", 1)), False),
}


def store(event_retention_days: int = 30) -> tuple[MongoStore, FakeDatabase]:
    database = FakeDatabase()
    return MongoStore(cast(Any, database), event_retention_days=event_retention_days), database


def test_each_repository_works_on_its_own_collection() -> None:
    built, database = store()
    assert built.sessions.collection is database[documents.SESSIONS]
    assert built.events.collection is database[documents.EVENTS]
    assert built.connections.collection is database[documents.CONNECTIONS]
    assert built.servers.collection is database[documents.SERVERS]
    assert built.idempotency.collection is database[documents.IDEMPOTENCY]
    assert built.idempotency.stale.total_seconds() == IDEMPOTENCY_STALE_SECONDS


def test_health_writes_share_the_registrys_collection_and_its_listeners() -> None:
    built, database = store()
    assert built.server_health.servers is database[documents.SERVERS]
    assert built.server_health.events is database[documents.SERVER_EVENTS]
    assert built.server_health.changed == built.servers.changed


def indexes(database: FakeDatabase) -> dict[str, list[IndexModel]]:
    found: dict[str, list[IndexModel]] = {}
    for name, collection in database.collections.items():
        for call in collection.called("create_indexes"):
            found.setdefault(name, []).extend(call.args[0])
    return found


async def test_every_index_is_asked_for() -> None:
    built, database = store()
    await built.ensure_indexes()
    asked = {
        name: {
            (model.document["name"], tuple(model.document["key"].items()), bool(model.document.get("unique")))
            for model in models
        }
        for name, models in indexes(database).items()
    }
    assert {name: asked[name] for name in INDEXES} == INDEXES
    assert asked[documents.OUTBOX] >= OUTBOX_INDEXES


async def test_the_idempotency_key_is_unique_only_where_one_was_given() -> None:
    built, database = store()
    await built.ensure_indexes()
    (model,) = [
        m for m in indexes(database)[documents.SESSIONS] if m.document["name"] == "idempotency_unique"
    ]
    assert model.document["partialFilterExpression"] == {"idempotency_key": {"$type": "string"}}


async def test_event_retention_follows_the_setting() -> None:
    built, database = store(event_retention_days=3)
    await built.ensure_indexes()
    ttls = {
        name: model.document["expireAfterSeconds"]
        for name in (documents.EVENTS, documents.SERVER_EVENTS)
        for model in indexes(database)[name]
        if "expireAfterSeconds" in model.document
    }
    assert ttls == {documents.EVENTS: 3 * 86400, documents.SERVER_EVENTS: 3 * 86400}


def test_the_cursor_functions_are_those_of_the_sessions_module() -> None:
    assert (encode_cursor, decode_cursor) == (sessions.encode_cursor, sessions.decode_cursor)
