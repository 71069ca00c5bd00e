"""Commutative state deltas: how a state item (a flat map of field -> number) changes.

Connectors that keep state in memory or in SQLite apply deltas with these
functions; the aggregator uses them to compute the state after each record.
"""

from __future__ import annotations

from typing import Any

from agglo_core.effects import Deltas


def _apply(op: str, current: Any, amount: Any) -> Any:
    if current is None:
        return amount
    if op == "add":
        return current + amount
    if op == "max":
        return amount if amount > current else current
    return amount if amount < current else current


def apply_deltas(item: dict[str, Any], deltas: Deltas) -> dict[str, Any]:
    """A new item: ``item`` with ``deltas`` applied."""
    out = dict(item)
    for name, (op, amount) in deltas.items():
        out[name] = _apply(op, out.get(name), amount)
    return out


def combine_deltas(into: Deltas, more: Deltas) -> None:
    """Fold ``more`` into ``into`` (in place): applying the result equals applying both in turn."""
    for name, (op, amount) in more.items():
        prev = into.get(name)
        into[name] = (op, amount if prev is None else _apply(op, prev[1], amount))
