"""In-process stores: ``mem:NAME`` for key-value and object stores.

One store per NAME per OS process, shared by every external that names it, as
binge's ``mem:`` stores were. Useful for tests and for state that may be lost.
"""

from __future__ import annotations

import threading
from typing import Any

from agglo_core.config import External
from agglo_core.effects import Put
from handlers.connectors.kv import perform_kv

_stores: dict[tuple[str, str], MemoryStore] = {}
_stores_lock = threading.Lock()


class MemoryStore:
    """A dict behind a lock; effects in one ``perform`` call are applied atomically together."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.data: dict[str, Any] = {}
        self._lock = threading.Lock()

    def perform(self, effects: list[Any]) -> list[Any]:
        with self._lock:
            return perform_kv(effects, self.data.get, self.data.__setitem__, self._delete)

    def _delete(self, key: str) -> None:
        self.data.pop(key, None)

    def get(self, key: str) -> Any:
        return self.data.get(key)


class MemoryObjectStore(MemoryStore):
    def perform(self, effects: list[Any]) -> list[Any]:
        if not all(isinstance(e, Put) for e in effects):
            raise TypeError("an object store can only store objects")
        return super().perform(effects)


def store(kind: str, name: str) -> MemoryStore:
    """The process-wide store ``mem:NAME`` of ``kind`` ("kv" or "object")."""
    with _stores_lock:
        s = _stores.get((kind, name))
        if s is None:
            s = _stores[(kind, name)] = MemoryStore(name) if kind == "kv" else MemoryObjectStore(name)
        return s


def reset() -> None:
    """Forget every in-process store (tests)."""
    with _stores_lock:
        _stores.clear()


def register(registry: Any) -> None:
    def name_of(ext: External) -> str:
        return ext.connectionString.split(":", 1)[1]

    registry.register("ExternalKVStore", "mem", lambda ext: store("kv", name_of(ext)))
    registry.register("ExternalObjectStore", "mem", lambda ext: store("object", name_of(ext)))
