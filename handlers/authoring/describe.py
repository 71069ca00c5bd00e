"""How the authoring tools show effects: as JSON, without the system they go to."""

from __future__ import annotations

from agglo_core.effects import ApplyDeltas, CompareAndPut, Effect, GetItems, JoinAdd, Put, TickerCall


def describe_effect(e: Effect) -> dict:
    """An effect as JSON (what a test's ``effects:`` compares with), without the system it goes to."""
    if isinstance(e, Put):
        return {"key": e.key, "body": e.body}
    if isinstance(e, ApplyDeltas):
        return {"key": e.key, "deltas": {name: {op: amount} for name, (op, amount) in e.deltas.items()}}
    if isinstance(e, JoinAdd):
        return {"key": e.key, "join": e.member}
    if isinstance(e, GetItems):
        return {"get": list(e.keys)}
    if isinstance(e, CompareAndPut):
        return {"key": e.key, "expected": e.expected, "writes": {k: body for k, body in e.writes},
                "absent": list(e.absent)}
    if isinstance(e, TickerCall):
        return {"ticker": e.endpoint, "call": f"{e.method} {e.path}", "body": e.body}
    return {"args": list(e.args), "input": e.input, "wait": e.wait}
