"""What every key-value connector does with the core's effects, given get/put/delete on one store.

Backends with their own atomic primitives (DynamoDB, Redis) implement the
effects natively; in-process and SQLite stores run this inside a lock or a
transaction, which makes each effect atomic.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from agglo_core.effects import ApplyDeltas, JoinAdd, JoinDelete, JoinState, Put
from agglo_core.state import apply_deltas


def perform_kv(effects: list[Any], get: Callable[[str], Any], put: Callable[[str, Any], None],
               delete: Callable[[str], None]) -> list[Any]:
    results: list[Any] = []
    for e in effects:
        if isinstance(e, ApplyDeltas):
            before = get(e.key) or {}
            put(e.key, apply_deltas(before, e.deltas))
            results.append(before)
        elif isinstance(e, JoinAdd):
            join = get(e.key) or {"members": [], "deadline": e.deadline_ms}
            if e.member not in join["members"]:
                join = {"members": [*join["members"], e.member], "deadline": join["deadline"]}
                put(e.key, join)
            results.append(JoinState(frozenset(join["members"]), join["deadline"]))
        elif isinstance(e, JoinDelete):
            join = get(e.key)
            gone = join is not None and join.get("deadline") == e.deadline_ms
            if gone:
                delete(e.key)
            results.append(gone)
        elif isinstance(e, Put):
            put(e.key, e.body)
            results.append(None)
        else:
            raise TypeError(f"a key-value store cannot perform {type(e).__name__}")
    return results
