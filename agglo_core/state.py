"""Commutative state deltas: how a state item (a flat map of field -> number) changes.

Connectors apply deltas (and joins) with these functions inside their atomic
step; the aggregator uses them to compute the state after each record.
"""

from __future__ import annotations

from typing import Any

from agglo_core.effects import Deltas, JoinAdd, JoinState
from agglo_core.records import int_text

STATE_LIMIT = 1e125
"""The largest magnitude a non-integer state field may reach, the same in every store: DynamoDB's numbers
stop just short of 1e126, and well below it a float sum never overflows to infinity."""
STATE_INT_MIN, STATE_INT_MAX = -(2**63), 2**63 - 1
"""Integer state fields stay within signed 64 bits (Firestore's integers; what every store writes exactly)."""


class StateOverflow(ArithmeticError):
    """A state field would leave the bounds every store keeps: the change is refused, the state unchanged."""


BOUNDS = "beyond the bounds every state store keeps (integers within signed 64 bits, other numbers within ±1e125)"
REFUSED = "the change is refused and the state left as it was"


def state_problem(value: Any) -> str | None:
    """How a number that cannot be a state field shows in a message (None: it can be one)."""
    if type(value) is int:
        if STATE_INT_MIN <= value <= STATE_INT_MAX:
            return None
        return int_text(value)
    if -STATE_LIMIT <= value <= STATE_LIMIT:  # false for nan
        return None
    return repr(value)


def _checked(name: str, value: Any) -> Any:
    if (shown := state_problem(value)) is not None:
        raise StateOverflow(f"state field '{name}' would become {shown}, {BOUNDS}: {REFUSED}")
    return value


def _apply(op: str, current: Any, amount: Any, name: str) -> Any:
    if current is None:
        out = amount
    elif op == "add":
        out = current + amount
    elif op == "max":
        return _checked(name, amount) if amount > current else current
    else:
        return _checked(name, amount) if amount < current else current
    # Inline for the common case (this runs per record and field): a float or an int within bounds.
    if type(out) is float:
        if -STATE_LIMIT <= out <= STATE_LIMIT:
            return out
    elif STATE_INT_MIN <= out <= STATE_INT_MAX:
        return out
    return _checked(name, out)


def apply_deltas(item: dict[str, Any], deltas: Deltas) -> dict[str, Any]:
    """A new item: ``item`` with ``deltas`` applied."""
    out = dict(item)
    for name, (op, amount) in deltas.items():
        out[name] = _apply(op, out.get(name), amount, name)
    return out


def apply_parts(item: dict[str, Any], parts: tuple[tuple[str, Deltas], ...],
                skip: Any = ()) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """``item`` with each marked part not in ``skip`` applied in turn, and per applied mark the
    fields its part wrote, as they were right after it (what the store remembers under the mark)."""
    out = dict(item)
    after: dict[str, dict[str, Any]] = {}
    for mark, deltas in parts:
        if mark in skip:
            continue
        for name, (op, amount) in deltas.items():
            out[name] = _apply(op, out.get(name), amount, name)
        after[mark] = {name: out[name] for name in deltas}
    return out, after


def checked_deltas(deltas: Deltas) -> Deltas:
    """``deltas`` itself once every amount is within the state's bounds (``combine_deltas({}, deltas)``
    without the copy); raises ``StateOverflow`` otherwise."""
    for name, (_, amount) in deltas.items():
        _checked(name, amount)
    return deltas


def combine_deltas(into: Deltas, more: Deltas) -> None:
    """Fold ``more`` into ``into`` (in place): applying the result equals applying both in turn."""
    for name, (op, amount) in more.items():
        prev = into.get(name)
        into[name] = (op, _checked(name, amount) if prev is None else _apply(op, prev[1], amount, name))


def add_to_join(join: dict | None, e: JoinAdd) -> tuple[dict | None, JoinState]:
    """The join ``{"members", "deadline"}`` after ``e`` (None: ``e`` closed it), and ``e``'s answer.

    A join's deadline is the one its first add gave it; None (no deadline) never times out.
    Stores run this inside their atomic step, so exactly one add closes a join.
    """
    members = set(join["members"]) if join else set()
    deadline = _deadline(join.get("deadline")) if join else e.deadline_ms
    members.add(e.member)
    if deadline is not None and e.now_ms > deadline:
        closed = "timedout"
    elif e.required and members.issuperset(e.required):
        closed = "complete"
    else:
        closed = ""
    state = JoinState(frozenset(members), deadline, closed)
    return (None if closed else {"members": sorted(members), "deadline": deadline}), state


def _deadline(stored: Any) -> int | None:
    return None if stored is None else int(stored)


def join_memo(state: JoinState) -> dict:
    """A join answer as plain JSON, for a store to remember under the record's mark."""
    return {"members": sorted(state.members), "deadline": state.deadline_ms, "closed": state.closed}


def join_from_memo(memo: dict) -> JoinState:
    return JoinState(frozenset(memo["members"]), _deadline(memo.get("deadline")), memo["closed"])
