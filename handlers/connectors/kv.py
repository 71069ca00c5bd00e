"""What a key-value connector does with the core's effects, given get/put/delete on one store.

Backends with their own atomic primitives (DynamoDB, Redis, Firestore) implement
the effects natively; in-process and SQLite stores are ``KeyValueStore``s: they
run these inside a lock or a transaction, which makes each effect atomic.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable
from typing import Any

from agglo_core.effects import (
    DEFAULT_JOIN_TTL_S,
    ApplyDeltas,
    CompareAndPut,
    DeltasApplied,
    GetItems,
    JoinAdd,
    JoinState,
    Put,
)
from agglo_core.state import StateOverflow, add_to_join, apply_deltas, apply_parts, join_from_memo, join_memo
from handlers.connectors.base import BaseConnector, Work
from handlers.connectors.spec import Option

MARK_PREFIX = "mark/"
DEFAULT_MARK_TTL_S = 7 * 24 * 3600

JOIN_TTL = Option(
    "joinTtl", type="seconds", default=str(DEFAULT_JOIN_TTL_S), metavar="SECONDS",
    doc="how long a completer's join without a deadline is kept after its last add (default 7 days)")
"""Every key-value connector that keeps joins declares this option."""


def mark_ttl_s() -> int:
    """How long a record's dedupe mark is kept: ``AGGLO_DEDUPE_TTL_S`` (default 7 days).

    Redeliveries later than this are applied again; keep it above the longest
    time a platform may redeliver (SQS retention, Kinesis retention, Pub/Sub's).
    """
    return int(os.environ.get("AGGLO_DEDUPE_TTL_S", DEFAULT_MARK_TTL_S))


def apply_marked_in_store(e: ApplyDeltas, get: Callable[[str], Any], put: Callable[[str, Any], None],
                  now_s: float, ttl_s: int) -> DeltasApplied:
    """Applies the parts whose mark is not live, remembering each one's mark and the fields it wrote."""
    before = get(e.key) or {}
    if not e.marks:
        put(e.key, apply_deltas(before, e.deltas))
        return DeltasApplied(before)
    remembered = {}
    for mark, _ in e.marks:
        known = get(MARK_PREFIX + mark)
        if known is not None and known.get("expires", 0) > now_s:
            remembered[mark] = known.get("after") or {}
    after, fields = apply_parts(before, e.marks, remembered)
    for mark, wrote in fields.items():
        put(MARK_PREFIX + mark, {"expires": now_s + ttl_s, "after": wrote})
    put(e.key, after)
    return DeltasApplied(before, frozenset(remembered), remembered)


def join_add_in_store(e: JoinAdd, get: Callable[[str], Any], put: Callable[[str, Any], None],
              delete: Callable[[str], None], now_s: float, ttl_s: int, join_ttl_s: float) -> JoinState:
    """Adds the member and closes the join if this add decides it; answers a known mark as before.

    A join without a deadline is stored with an ``expires`` time, ``join_ttl_s`` after this add; once
    past it the join counts as gone (whether or not a purge has deleted it yet).
    """
    if e.mark:
        known = get(MARK_PREFIX + e.mark)
        if known is not None and known.get("expires", 0) > now_s and "closed" in known:
            return join_from_memo(known)
    current = get(e.key)
    if current is not None and current.get("expires", now_s + 1) <= now_s:
        current = None  # forgotten: this add starts a new join
    join, state = add_to_join(current, e)
    if join is None:
        delete(e.key)
    else:
        if join["deadline"] is None:
            join["expires"] = now_s + join_ttl_s
        put(e.key, join)
    if e.mark:
        put(MARK_PREFIX + e.mark, {"expires": now_s + ttl_s, **join_memo(state)})
    return state


def compare_and_put_in_store(e: CompareAndPut, get: Callable[[str], Any], put: Callable[[str, Any], None]) -> bool:
    """``CompareAndPut`` inside the caller's lock or transaction."""
    current = get(e.key)
    if (None if current is None else current.get("uuid", "") if isinstance(current, dict) else "") != e.expected:
        return False
    if any(get(k) is not None for k in e.absent):
        return False
    for key, value in e.writes:
        put(key, value)
    return True


class KeyValueStore(BaseConnector):
    """A store that has only get, put and delete: every batch runs inside ``transaction()`` (a lock, or a
    database transaction), which makes each effect, and the batch, atomic."""

    capabilities = frozenset({"Put", "ApplyDeltas", "JoinAdd", "GetItems", "CompareAndPut"})
    PURGE_EVERY_S = 600

    def __init__(self) -> None:
        self._next_purge = time.time() + self.PURGE_EVERY_S
        self.mark_ttl_s = mark_ttl_s()
        """How long this store keeps dedupe marks, read once when it is built (not per state change)."""
        self.join_ttl_s: float = DEFAULT_JOIN_TTL_S
        """How long it keeps a join without a deadline after its last add (the connection string's joinTtl)."""

    def transaction(self) -> contextlib.AbstractContextManager[Any]:
        raise NotImplementedError

    def read(self, key: str) -> Any:
        raise NotImplementedError

    def write(self, key: str, value: Any) -> None:
        raise NotImplementedError

    def remove(self, key: str) -> None:
        raise NotImplementedError

    def purge_expired(self, now_s: float | None = None) -> int:
        raise NotImplementedError

    def transaction_for(self, works: list[Work]) -> contextlib.AbstractContextManager[Any]:
        """What makes this batch atomic: ``transaction()``, unless a store knows a cheaper way for it."""
        return self.transaction()

    def perform_batch(self, works: list[Work]) -> list[Any]:
        dispatch = self._dispatch_refusable
        with self.transaction_for(works):  # an exception rolls back the batch
            results = [dispatch(works[0])] if len(works) == 1 else [dispatch(w) for w in works]
        now = time.time()
        if now >= self._next_purge:
            self._next_purge = now + self.PURGE_EVERY_S
            self.purge_expired()
        return results

    def _dispatch_refusable(self, work: Work) -> Any:
        """One effect of the batch; a change refused for its data (state past its bounds, found before
        anything is written) fails that effect alone and the batch goes on."""
        try:
            return self.dispatch(work)
        except StateOverflow as err:
            return self.failure(err)

    def put(self, e: Put, body: bytes) -> None:
        self.write(e.key, e.body)

    def apply_deltas(self, e: ApplyDeltas) -> DeltasApplied:
        return apply_marked_in_store(e, self.read, self.write, time.time(), self.mark_ttl_s)

    def join_add(self, e: JoinAdd) -> JoinState:
        return join_add_in_store(e, self.read, self.write, self.remove, time.time(), self.mark_ttl_s,
                                 self.join_ttl_s)

    def get_items(self, e: GetItems) -> tuple:
        return tuple(self.read(k) for k in e.keys)

    def compare_and_put(self, e: CompareAndPut, values: tuple[bytes, ...]) -> bool:
        return compare_and_put_in_store(e, self.read, self.write)
