"""aggregator's stage: sum, max, min, avg, count or histogram of a field, per group, in a KV store.

State changes only through commutative ``ApplyDeltas`` effects: one per distinct
state key per batch. The store answers with the item as it was before the
batch's deltas, from which each record's own "state after me" is computed, so
outputs are exactly those of one-at-a-time processing. A redelivered record (its
mark already known to the store) changes nothing and shows what it showed the
first time.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Generator
from typing import Any

import orjson

from agglo_core.codegen import Emitter, selecting
from agglo_core.effects import ApplyDeltas, Deltas, DeltasApplied, Effect, EffectFailed
from agglo_core.errors import describe
from agglo_core.ids import IdMaker
from agglo_core.ir import ProcessIR
from agglo_core.paths import MISSING, compile_getter
from agglo_core.pipeline import Driver, Invocation, Item, StageContext, effect_error
from agglo_core.state import StateOverflow, apply_deltas, checked_deltas, combine_deltas

NIL = "nil"


def render(value: Any) -> str:
    """A JSON value as a map key: strings as they are, anything else as its JSON text."""
    if type(value) is str:
        return value
    if value is MISSING:
        return NIL
    try:
        return orjson.dumps(value).decode()
    except orjson.JSONEncodeError:  # integers beyond 64 bits
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


_FLOAT_MAX = 1.7976931348623157e308


def _is_number(v: Any) -> bool:
    """A number the aggregations can take: integers beyond float range are not."""
    return type(v) is float or (type(v) is int and -_FLOAT_MAX <= v <= _FLOAT_MAX)


def _delta_for(kind: str, v: Any) -> Deltas | None:
    if v is MISSING:
        return None
    if kind == "AggCount":
        return {"value": ("add", 1)}
    if kind == "AggDiscreteHistogram":
        return None if type(v) is dict or type(v) is list else {render(v): ("add", 1)}
    if not _is_number(v):
        return None
    if kind == "AggSum":
        return {"value": ("add", v)}
    if kind == "AggMax":
        return {"value": ("max", v)}
    if kind == "AggMin":
        return {"value": ("min", v)}
    return {"sum": ("add", v), "num": ("add", 1)}  # AggAvg


def _shape(kind: str, item: dict) -> dict:
    if kind == "AggDiscreteHistogram":
        return {"buckets": dict(item)}
    if kind == "AggAvg":
        total, n = item["sum"], item["num"]
        return {"sum": total, "num": n, "value": total / n}
    return {"value": item["value"]}


class AggregatorStage:
    pure = False
    hands_no_event = True
    """Its effects carry deltas only; a forwarded event is a new map: generated code after it need not copy."""

    def __init__(self, ctx: StageContext) -> None:
        d = ctx.step.params
        agg = d["aggregation"]
        self.name = d["name"]
        self._cond = ctx.predicate(d["condition"])
        self._kind = agg["aggregationType"]
        self._get = compile_getter(agg["key"])
        self._groups = [compile_getter(g) for g in agg["groupByKeys"]]
        self._entry = f"{agg['key']}:{self._kind}"
        self._out_key = f"internal:aggregation:{ctx.pipeline}"
        self._key_prefix = f"agg/{ctx.partition}/{ctx.pipeline}/{self.name}/{self._entry}"
        self._store, self._forward, self._retry = d["stateStore"], d["forwardState"], ctx.retry
        self._marks = IdMaker(ctx.partition, ctx.pipeline, self.name, "state")
        self._keys: dict[tuple[str, ...], str] = {}
        self._select = _generated_prelude(ctx.step, self._kind) if ctx.codegen else None

    def _selected(self, items: list[Item]) -> list[tuple[Item, Deltas, tuple[str, ...]]]:
        """The records this aggregator counts, each with its change and its group key (the prelude)."""
        cond, kind, get, out = self._cond, self._kind, self._get, []
        for it in items:
            event = it.event
            if cond is not None and not cond(event):  # type: ignore[arg-type]
                continue
            delta = _delta_for(kind, get(event))  # type: ignore[arg-type]
            if delta is None:
                continue
            out.append((it, delta, tuple([render(g(event)) for g in self._groups])))  # type: ignore[arg-type]
        return out

    def state_key(self, groups: tuple[str, ...]) -> str:
        key = self._keys.get(groups)
        if key is None:
            key = self._key_prefix + orjson.dumps(groups).decode() if groups else self._key_prefix
            if len(self._keys) < 4096:  # group values repeat; high-cardinality ones just miss
                self._keys[groups] = key
        return key

    def run(self, items: list[Item], inv: Invocation) -> Driver:
        selected = (self._select or self._selected)(items)
        if len(selected) == 1:  # a call of one record (or one counted): none of a batch's bookkeeping
            it, delta, groups = selected[0]
            yield from self._run_one(it, delta, groups, inv)
            return
        combined: dict[str, Deltas] = {}
        marks: dict[str, list[tuple[str, Deltas]]] = {}
        seen: set[str] = set()
        # Per counted record: its item, state key, groups, own delta, mark, and its key's deltas combined
        # through it (what an unmarked record is shown on top of the stored state).
        updates: list[tuple[Item, str, tuple[str, ...], Deltas, str, Deltas]] = []
        for it, delta, groups in selected:
            key = self.state_key(groups)
            prev = combined.get(key)
            try:
                if prev is None:  # the key's first record: its own delta, checked, is the sum so far
                    merged = checked_deltas(delta)
                else:  # a new dict: the sums through earlier records stay as they were
                    merged = dict(prev)
                    combine_deltas(merged, delta)
            except ArithmeticError as e:
                it.fail(self.name, _fault(e))
                continue
            mark = self._marks(it.record.id) if inv.dedupe else ""
            if mark and mark in seen:
                updates.append((it, key, groups, {}, "", {}))  # the same record twice in one batch: count it once
                continue
            if mark:
                seen.add(mark)
                marks.setdefault(key, []).append((mark, delta))
            combined[key] = merged
            updates.append((it, key, groups, delta, mark, merged))
        if not updates:
            return
        keys = list(combined)
        results = yield [ApplyDeltas(self._store, k, combined[k], self._retry, tuple(marks.get(k, ())))
                         for k in keys]
        answers: dict[str, Any] = dict(zip(keys, results, strict=True))
        refused = False
        for r in results:
            if isinstance(r, EffectFailed) and not r.transient:
                refused = True
                break
        own = (yield from self._one_by_one(answers, updates)) if refused else {}
        state = {k: a.before for k, a in answers.items() if isinstance(a, DeltasApplied)}
        # Each record is shown the state after it, computed as the store computes it (floats are not
        # associative): marked parts are applied one record at a time; unmarked deltas are added to the stored
        # state combined, so a record sees the stored state plus the batch's combined deltas so far.
        for it, key, groups, delta, mark, through in updates:
            retried = bool(own) and id(it) in own
            answer = own[id(it)] if retried else answers[key]
            if (err := effect_error(answer)) is not None:
                it.fail(self.name, f"could not update state in '{self._store}': {err}", transient=err.transient)
                continue
            try:
                if mark in answer.duplicates:
                    # Applied by an earlier delivery of this record: change nothing, and show what that
                    # delivery showed (the fields it wrote, as the store remembers them).
                    after = {**(answer.before if retried else state[key]), **answer.remembered.get(mark, {})}
                elif retried:
                    after = apply_deltas(answer.before, delta)
                elif mark:
                    after = state[key] = apply_deltas(state[key], delta)
                else:
                    after = apply_deltas(state[key], through)
                forwarded = self._forwarded(it.event, groups, after) if self._forward else None  # type: ignore[arg-type]
            except ArithmeticError as e:
                it.fail(self.name, _fault(e))
                continue
            if forwarded is not None:
                it.event = forwarded

    def _run_one(self, it: Item, delta: Deltas, groups: tuple[str, ...], inv: Invocation) -> Driver:
        """``run`` for one counted record: one change, one answer, the state after it."""
        key = self.state_key(groups)
        try:
            checked_deltas(delta)
        except ArithmeticError as e:
            it.fail(self.name, _fault(e))
            return
        mark = self._marks(it.record.id) if inv.dedupe else ""
        [answer] = yield [ApplyDeltas(self._store, key, delta, self._retry, ((mark, delta),) if mark else ())]
        if (err := effect_error(answer)) is not None:
            it.fail(self.name, f"could not update state in '{self._store}': {err}", transient=err.transient)
            return
        try:
            if mark in answer.duplicates:  # an earlier delivery's: show what it showed
                after = {**answer.before, **answer.remembered.get(mark, {})}
            else:
                after = apply_deltas(answer.before, delta)
            forwarded = self._forwarded(it.event, groups, after) if self._forward else None  # type: ignore[arg-type]
        except ArithmeticError as e:
            it.fail(self.name, _fault(e))
            return
        if forwarded is not None:
            it.event = forwarded

    def _one_by_one(self, answers: dict[str, Any],
                    updates: list[tuple[Item, str, tuple[str, ...], Deltas, str, Deltas]]
                    ) -> Generator[list[Effect], list[Any], dict[int, Any]]:
        """Where a store refused a key's combined change (the record's data, say a sum past the bounds every
        store keeps), each record's own change again, in order: the one at fault fails alone.

        Returns each retried record's own answer, by ``id`` of its item.
        """
        queues: dict[str, list[tuple[Item, Deltas, str]]] = {}
        for it, key, _, delta, mark, _ in updates:
            if delta and (err := effect_error(answers[key])) is not None and not err.transient:
                queues.setdefault(key, []).append((it, delta, mark))
        queues = {k: q for k, q in queues.items() if len(q) > 1}
        own: dict[int, Any] = {}
        step = 0
        while batch := [(k, q[step]) for k, q in queues.items() if step < len(q)]:
            got = yield [ApplyDeltas(self._store, k, delta, self._retry, ((mark, delta),) if mark else ())
                         for k, (_, delta, mark) in batch]
            for (_, (it, _, _)), answer in zip(batch, got, strict=True):
                own[id(it)] = answer
            step += 1
        return own

    def _forwarded(self, event: dict, groups: tuple[str, ...], item: dict) -> dict:
        if not item:  # a redelivery whose state has since expired: nothing to show
            return event
        value: dict = _shape(self._kind, item)
        for g in reversed(groups):
            value = {g: value}
        existing = event.get(self._out_key)
        entries = dict(existing) if type(existing) is dict else {}
        entries[self._entry] = value
        return {**event, self._out_key: entries}


def _generated_prelude(step: ProcessIR, kind: str) -> Callable[[list[Item]], list]:
    """``_selected`` as generated code: condition, value and group keys read inline."""
    em = Emitter()
    agg = step.params["aggregation"]
    with selecting(em, step):
        value = em.get(tuple(agg["key"].split(".")))
        em.line(f"delta = {em.const(_delta_for, 'the change a value makes')}({em.const(kind)}, {value})")
        with em.block("if delta is None:"):
            em.line("continue")
        render_ = em.const(render, "a group value as text")
        groups = "".join(f"{render_}({em.get(tuple(g.split('.')))}), " for g in agg["groupByKeys"])
        em.line(f"out.append((it, delta, ({groups})))")
    return em.build("select", "aggregator", step.name)


def _fault(e: ArithmeticError) -> str:
    return str(e) if isinstance(e, StateOverflow) else describe(e)


def compile(ctx: StageContext) -> AggregatorStage:
    return AggregatorStage(ctx)
