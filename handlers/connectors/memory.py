"""In-process stores: ``mem:NAME`` for key-value and object stores.

One store per NAME per OS process, shared by every external that names it, as
binge's ``mem:`` stores were. Useful for tests and for state that may be lost.
Expired dedupe marks, and joins without a deadline past their ``joinTtl``, are
forgotten every ``KeyValueStore.PURGE_EVERY_S`` seconds (and an expired join is
ignored before that).
"""

from __future__ import annotations

import copy
import threading
import time
from collections.abc import Iterator
from typing import Any

from agglo_core.effects import JOIN_PREFIX
from handlers.connectors.kv import JOIN_TTL, MARK_PREFIX, KeyValueStore
from handlers.connectors.spec import ConnectorSpec, Option

_stores: dict[tuple[str, str], MemoryStore] = {}
_stores_lock = threading.Lock()


class MemoryStore(KeyValueStore):
    """A dict behind a lock; effects in one ``perform`` call are applied atomically together."""

    keeps_values = True
    def __init__(self, name: str) -> None:
        super().__init__()
        self.name = name
        self.data: dict[str, Any] = {}
        self._lock = threading.Lock()

    def transaction(self) -> threading.Lock:
        return self._lock

    def read(self, key: str) -> Any:
        return self.data.get(key)

    def write(self, key: str, value: Any) -> None:
        self.data[key] = value

    def remove(self, key: str) -> None:
        self.data.pop(key, None)

    def with_join_ttl(self, seconds: float) -> MemoryStore:
        """This store as an external whose joinTtl is ``seconds`` sees it: the same items, the same lock."""
        if seconds == self.join_ttl_s:
            return self
        view = copy.copy(self)
        view.join_ttl_s = seconds
        return view

    def purge_expired(self, now_s: float | None = None) -> int:
        """Forget the dedupe marks and joins that expired (by ``now_s``); returns how many."""
        now_s = time.time() if now_s is None else now_s
        with self._lock:
            gone = [k for k, v in self.data.items() if k.startswith((MARK_PREFIX, JOIN_PREFIX))
                    and isinstance(v, dict) and v.get("expires", now_s) < now_s]
            for k in gone:
                del self.data[k]
        return len(gone)

    def get(self, key: str) -> Any:
        return self.data.get(key)

    def scan(self, prefix: str = "") -> Iterator[tuple[str, Any]]:
        with self._lock:
            found = sorted((k, v) for k, v in self.data.items() if k.startswith(prefix))
        yield from found

    def describe(self) -> str:
        return f"mem:{self.name}"


class MemoryObjectStore(MemoryStore):
    capabilities = frozenset({"Put"})


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


_NAME = Option("name", required=True, metavar="NAME", doc="the store's name; externals naming it share it")

SPECS = (
    ConnectorSpec(
        "in-process key-value store", ("mem",), ("ExternalKVStore",), MemoryStore.capabilities,
        None,
        "in-process store; one per NAME per OS process, shared by every external naming it",
        lambda ext, opts: store("kv", opts["name"]).with_join_ttl(float(opts["joinTtl"])), form="value",
        options=(_NAME, JOIN_TTL)),
    ConnectorSpec(
        "in-process object store", ("mem",), ("ExternalObjectStore",), MemoryObjectStore.capabilities,
        None, "in-process object store",
        lambda ext, opts: store("object", opts["name"]), form="value", options=(_NAME,)),
)
