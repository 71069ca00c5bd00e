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
    Deltas,
    DeltasApplied,
    GetItems,
    JoinAdd,
    JoinDelete,
    JoinState,
    Put,
)
from agglo_core.state import apply_deltas, combine_deltas

MARK_PREFIX = "mark/"
DEFAULT_MARK_TTL_S = 7 * 24 * 3600


def mark_ttl_s() -> int:
    """How long a record's dedupe mark is kept: ``AGGLO_DEDUPE_TTL_S`` (default 7 days).

    Redeliveries later than this are applied again; keep it above the longest
    time a platform may redeliver (SQS retention, Kinesis retention, Pub/Sub's).
    """
    return int(os.environ.get("AGGLO_DEDUPE_TTL_S", DEFAULT_MARK_TTL_S))


def _apply_marked(e: ApplyDeltas, get: Callable[[str], Any], put: Callable[[str, Any], None],
                  now_s: float, ttl_s: int) -> tuple[Deltas, frozenset[str]]:
    """The deltas of the parts not seen before, and the marks that were; remembers the new marks."""
    if not e.marks:
        return e.deltas, frozenset()
    fresh: Deltas = {}
    duplicates = set()
    for mark, deltas in e.marks:
        known = get(MARK_PREFIX + mark)
        if known is not None and known.get("expires", 0) > now_s:
            duplicates.add(mark)
            continue
        put(MARK_PREFIX + mark, {"expires": now_s + ttl_s})
        combine_deltas(fresh, deltas)
    return (fresh if duplicates else e.deltas), frozenset(duplicates)


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
            before = get(e.key) or {}
            deltas, duplicates = _apply_marked(e, get, put, now_s, ttl_s)
            put(e.key, apply_deltas(before, deltas))
            results.append(DeltasApplied(before, duplicates))
        elif kind is JoinAdd:
            join = get(e.key) or {"members": [], "deadline": e.deadline_ms}
            if e.member not in join["members"]:
                join = {"members": [*join["members"], e.member], "deadline": join["deadline"]}
                put(e.key, join)
            results.append(JoinState(frozenset(join["members"]), join["deadline"]))
        elif kind is JoinDelete:
            join = get(e.key)
            gone = join is not None and join.get("deadline") == e.deadline_ms
            if gone:
                delete(e.key)
            results.append(gone)
        elif kind is GetItems:
            results.append(tuple(get(k) for k in e.keys))
        elif kind is CompareAndPut:
            results.append(compare_and_put(e, get, put))
        else:
            raise TypeError(f"a key-value store cannot perform {type(e).__name__}")
    return results
