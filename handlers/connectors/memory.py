"""In-process stores: ``mem:NAME`` for key-value and object stores.

One store per NAME per OS process, shared by every external that names it, as
binge's ``mem:`` stores were. Useful for tests and for state that may be lost.
Expired dedupe marks are forgotten every ``PURGE_EVERY_S`` seconds.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from agglo_core.config import External
from agglo_core.effects import Put
from handlers.connectors.kv import MARK_PREFIX, perform_kv

PURGE_EVERY_S = 600

_stores: dict[tuple[str, str], MemoryStore] = {}
_stores_lock = threading.Lock()


class MemoryStore:
    """A dict behind a lock; effects in one ``perform`` call are applied atomically together."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.data: dict[str, Any] = {}
        self._lock = threading.Lock()
        self._next_purge = time.time() + PURGE_EVERY_S

    def perform(self, effects: list[Any]) -> list[Any]:
        with self._lock:
            results = perform_kv(effects, self.data.get, self.data.__setitem__, self._delete)
        if time.time() >= self._next_purge:
            self._next_purge = time.time() + PURGE_EVERY_S
            self.purge_expired()
        return results

    def purge_expired(self, now_s: float | None = None) -> int:
        """Forget the dedupe marks that expired (by ``now_s``); returns how many."""
        now_s = time.time() if now_s is None else now_s
        with self._lock:
            gone = [k for k, v in self.data.items()
                    if k.startswith(MARK_PREFIX) and isinstance(v, dict) and v.get("expires", now_s) < now_s]
            for k in gone:
                del self.data[k]
        return len(gone)

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
