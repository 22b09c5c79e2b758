"""storage/documents.py: the collection names, ids and clock every repository shares."""

from __future__ import annotations

import uuid

from rdp_controller.storage import documents


def test_every_collection_has_its_own_name() -> None:
    names = {key: value for key, value in vars(documents).items() if key.isupper() and isinstance(value, str)}
    assert {"SESSIONS", "SERVERS", "CONNECTIONS", "EVENTS", "SERVER_EVENTS", "OUTBOX", "IDEMPOTENCY"} <= set(
        names
    )
    assert len(set(names.values())) == len(names), names


def test_ids_are_random_uuids_in_their_text_form() -> None:
    first, second = documents.new_id(), documents.new_id()
    assert first != second
    assert str(uuid.UUID(first)) == first and uuid.UUID(first).version == 4


def test_the_clock_is_utc_and_aware() -> None:
    now = documents.utcnow()
    assert now.utcoffset() is not None and now.utcoffset().total_seconds() == 0  # type: ignore[union-attr]


def test_documents_are_read_without_their_mongodb_id() -> None:
    assert documents.NO_ID == {"_id": False}
