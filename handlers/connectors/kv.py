"""What every key-value connector does with the core's effects, given get/put/delete on one store.

Backends with their own atomic primitives (DynamoDB, Redis) implement the
effects natively; in-process and SQLite stores run this inside a lock or a
transaction, which makes each effect atomic.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from agglo_core.effects import (
    ApplyDeltas,
    CompareAndPut,
    DeltasApplied,
    GetItems,
    JoinAdd,
    JoinState,
    Put,
)
from agglo_core.state import add_to_join, apply_deltas, apply_parts, join_from_memo, join_memo

MARK_PREFIX = "mark/"
DEFAULT_MARK_TTL_S = 7 * 24 * 3600


def mark_ttl_s() -> int:
    """How long a record's dedupe mark is kept: ``AGGLO_DEDUPE_TTL_S`` (default 7 days).

    Redeliveries later than this are applied again; keep it above the longest
    time a platform may redeliver (SQS retention, Kinesis retention, Pub/Sub's).
    """
    return int(os.environ.get("AGGLO_DEDUPE_TTL_S", DEFAULT_MARK_TTL_S))


def _apply_marked(e: ApplyDeltas, get: Callable[[str], Any], put: Callable[[str, Any], None],
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


def _join_add(e: JoinAdd, get: Callable[[str], Any], put: Callable[[str, Any], None],
              delete: Callable[[str], None], now_s: float, ttl_s: int) -> JoinState:
    """Adds the member and closes the join if this add decides it; answers a known mark as before."""
    if e.mark:
        known = get(MARK_PREFIX + e.mark)
        if known is not None and known.get("expires", 0) > now_s and "closed" in known:
            return join_from_memo(known)
    join, state = add_to_join(get(e.key), e)
    if join is None:
        delete(e.key)
    else:
        put(e.key, join)
    if e.mark:
        put(MARK_PREFIX + e.mark, {"expires": now_s + ttl_s, **join_memo(state)})
    return state


def compare_and_put(e: CompareAndPut, get: Callable[[str], Any], put: Callable[[str, Any], None]) -> bool:
    """``CompareAndPut`` inside the caller's lock or transaction."""
    current = get(e.key)
    if (None if current is None else current.get("uuid", "") if isinstance(current, dict) else "") != e.expected:
        return False
    if any(get(k) is not None for k in e.absent):
        return False
    for key, value in e.writes:
        put(key, value)
    return True


def perform_by_key(effects: list[Any], one: Callable[[Any], Any], parallelism: int) -> list[Any]:
    """``one(effect)`` for each effect, in order per key, different keys in parallel threads."""
    by_key: dict[str | None, list[int]] = {}
    for i, e in enumerate(effects):
        by_key.setdefault(getattr(e, "key", None), []).append(i)  # reads of several keys (GetItems): one group
    results: list[Any] = [None] * len(effects)

    def run_key(indexes: list[int]) -> None:
        for i in indexes:
            results[i] = one(effects[i])

    if len(by_key) <= 1:
        for indexes in by_key.values():
            run_key(indexes)
    else:
        with ThreadPoolExecutor(max_workers=min(parallelism, len(by_key))) as pool:
            list(pool.map(run_key, by_key.values()))
    return results


def perform_kv(effects: list[Any], get: Callable[[str], Any], put: Callable[[str, Any], None],
               delete: Callable[[str], None], now_s: float | None = None, ttl_s: int | None = None) -> list[Any]:
    now_s = time.time() if now_s is None else now_s
    ttl_s = mark_ttl_s() if ttl_s is None else ttl_s
    results: list[Any] = []
    for e in effects:
        kind = type(e)
        if kind is Put:
            put(e.key, e.body)
            results.append(None)
        elif kind is ApplyDeltas:
            results.append(_apply_marked(e, get, put, now_s, ttl_s))
        elif kind is JoinAdd:
            results.append(_join_add(e, get, put, delete, now_s, ttl_s))
        elif kind is GetItems:
            results.append(tuple(get(k) for k in e.keys))
        elif kind is CompareAndPut:
            results.append(compare_and_put(e, get, put))
        else:
            raise TypeError(f"a key-value store cannot perform {type(e).__name__}")
    return results
