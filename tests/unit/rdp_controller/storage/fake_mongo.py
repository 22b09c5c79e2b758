"""A small stand-in for pymongo's AsyncCollection and AsyncDatabase: it records every call and
answers what a test queued (or a harmless default), so a repository's queries and updates can be
checked without a server. What MongoDB does with them is tests/integration's business."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any


@dataclass
class Call:
    method: str
    args: tuple[Any, ...]
    kwargs: dict[str, Any]


@dataclass
class FakeCursor:
    """What ``find`` returns: ``sort`` and ``limit`` are recorded, ``to_list`` answers the documents."""

    documents: list[dict[str, Any]]
    sorts: list[Any] = field(default_factory=list)
    limits: list[int] = field(default_factory=list)

    def sort(self, *keys: Any) -> FakeCursor:
        self.sorts.append(keys[0] if len(keys) == 1 else keys)
        return self

    def limit(self, count: int) -> FakeCursor:
        self.limits.append(count)
        return self

    async def to_list(self, length: int | None = None) -> list[dict[str, Any]]:
        found = self.documents[: self.limits[-1]] if self.limits else self.documents
        return [dict(document) for document in (found if length is None else found[:length])]


class Rows:
    """What ``await aggregate(...)`` gives: an async iterable of rows."""

    def __init__(self, rows: list[dict[str, Any]]):
        self.rows = rows

    async def __aiter__(self) -> AsyncIterator[dict[str, Any]]:
        for row in self.rows:
            yield row


class FakeCollection:
    def __init__(self, name: str = "collection", documents: list[dict[str, Any]] | None = None):
        self.name = name
        self.documents = list(documents or [])  # what find() answers
        self.calls: list[Call] = []
        self.cursors: list[FakeCursor] = []
        self.answers: dict[str, list[Any]] = {}

    def answer(self, method: str, *values: Any) -> None:
        """Queue the next answers of ``method``; an exception instance is raised instead."""
        self.answers.setdefault(method, []).extend(values)

    def called(self, method: str) -> list[Call]:
        return [call for call in self.calls if call.method == method]

    def _call(self, method: str, default: Any, *args: Any, **kwargs: Any) -> Any:
        self.calls.append(Call(method, args, kwargs))
        queued = self.answers.get(method)
        value = queued.pop(0) if queued else default
        if isinstance(value, BaseException):
            raise value
        return value

    def find(self, *args: Any, **kwargs: Any) -> FakeCursor:
        cursor = self._call("find", FakeCursor(self.documents), *args, **kwargs)
        self.cursors.append(cursor)
        return cursor  # type: ignore[no-any-return]

    async def find_one(self, *args: Any, **kwargs: Any) -> Any:
        return self._call("find_one", None, *args, **kwargs)

    async def find_one_and_update(self, *args: Any, **kwargs: Any) -> Any:
        return self._call("find_one_and_update", None, *args, **kwargs)

    async def insert_one(self, *args: Any, **kwargs: Any) -> Any:
        return self._call("insert_one", SimpleNamespace(inserted_id="x"), *args, **kwargs)

    async def update_one(self, *args: Any, **kwargs: Any) -> Any:
        return self._call("update_one", SimpleNamespace(upserted_id=None, modified_count=1), *args, **kwargs)

    async def update_many(self, *args: Any, **kwargs: Any) -> Any:
        return self._call("update_many", SimpleNamespace(modified_count=0), *args, **kwargs)

    async def delete_one(self, *args: Any, **kwargs: Any) -> Any:
        return self._call("delete_one", SimpleNamespace(deleted_count=0), *args, **kwargs)

    async def count_documents(self, *args: Any, **kwargs: Any) -> Any:
        return self._call("count_documents", 0, *args, **kwargs)

    async def aggregate(self, *args: Any, **kwargs: Any) -> Any:
        return self._call("aggregate", Rows([]), *args, **kwargs)

    async def create_indexes(self, *args: Any, **kwargs: Any) -> Any:
        return self._call("create_indexes", [], *args, **kwargs)


class FakeDatabase:
    """``database[name]`` is the same FakeCollection each time."""

    def __init__(self) -> None:
        self.collections: dict[str, FakeCollection] = {}

    def __getitem__(self, name: str) -> FakeCollection:
        return self.collections.setdefault(name, FakeCollection(name))
