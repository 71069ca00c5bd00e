"""completer's stage: join events on the value of ``joinKeys`` within ``timeoutMs`` (<= 0: no deadline).

Each matching event adds its join key to the join's member set with one atomic
``JoinAdd``, which also closes (removes) the join when this add completes it or
comes after its deadline: so exactly one event gets ``complete``, however many
instances add at once. An event arriving after the deadline gets ``timedout``
and removes the join, so a later event starts a new one. A join without a
deadline (``timeoutMs`` <= 0, as binge's tests write -1) never times out; its
store forgets it ``joinTtl`` after its last add. With dedupe, the add
carries the record's mark and the store answers a redelivered record as it
answered the first delivery, without adding it again. Events of one batch that
hit the same join are applied in input order, one round each; when one of them
cannot be added, the later ones fail with it (unapplied), so a redelivery adds
them in the same order.
"""

from __future__ import annotations

from agglo_core.codegen import completer_prelude
from agglo_core.effects import JOIN_PREFIX, JoinAdd
from agglo_core.ids import IdMaker
from agglo_core.paths import MISSING, compile_getter
from agglo_core.pipeline import Driver, Invocation, Item, StageContext, effect_error
from agglo_core.records import unwritable
from agglo_core.stages.aggregator import render


class CompleterStage:
    pure = False

    def __init__(self, ctx: StageContext) -> None:
        d = ctx.step.params
        completion = d["completion"]
        self.name = d["name"]
        self._cond = ctx.predicate(d["condition"])
        self._join_keys = completion["joinKeys"]
        self._required = tuple(completion["joinKeys"])
        self._marks = IdMaker(ctx.partition, ctx.pipeline, self.name, "join")
        self._getters = [(k, compile_getter(k)) for k in completion["joinKeys"]]
        self._timeout: int | None = completion["timeoutMs"] if completion["timeoutMs"] > 0 else None
        self._store, self._retry = d["stateStore"], ctx.retry
        self._key_prefix = f"{JOIN_PREFIX}{ctx.partition}/{ctx.pipeline}/{self.name}/"
        self._status_key = f"internal:completion:{self.name}"
        self._state_key = f"internal:completion:state:{self.name}"
        self._select = completer_prelude(ctx.step, self._key_prefix, render, f"{self._state_key}.value") \
            if ctx.codegen else None

    def _selected(self, items: list[Item]) -> list[tuple[Item, str, object, str]]:
        """The records this completer joins: (item, state key, value, join key) (the prelude)."""
        out = []
        for it in items:
            event = it.event
            assert event is not None
            if self._cond is not None and not self._cond(event):
                continue
            for join_key, get in self._getters:  # noqa: B007 - the first present key is used below
                value = get(event)
                if value is not MISSING:
                    break
            else:
                continue
            if (type(value) is dict or type(value) is list) and \
                    (problem := unwritable(value, f"{self._state_key}.value", 2)) is not None:
                it.fail(self.name, f"the completed event could not be written as JSON: {problem}")  # before any effect
                continue
            out.append((it, self._key_prefix + render(value), value, join_key))
        return out

    def run(self, items: list[Item], inv: Invocation) -> Driver:
        rounds: list[list[tuple[Item, str, object, str]]] = []
        seen: dict[str, int] = {}
        for it, key, value, join_key in (self._select or self._selected)(items):
            n = seen[key] = seen.get(key, -1) + 1
            if n == len(rounds):
                rounds.append([])
            rounds[n].append((it, key, value, join_key))
        deadline = None if self._timeout is None else inv.now_ms + self._timeout
        failed: set[str] = set()
        for work in rounds:
            live = []
            for entry in work:
                if entry[1] in failed:  # keep a join's events in order: this one waits for the redelivery too
                    entry[0].fail(self.name, "an earlier event of this join in the batch could not be added",
                                  transient=True)
                else:
                    live.append(entry)
            if live:
                yield from self._round(live, deadline, inv, failed)

    def _round(self, work: list, deadline: int | None, inv: Invocation, failed: set[str]) -> Driver:
        marks = self._marks if inv.dedupe else None
        added = yield [JoinAdd(self._store, key, member, deadline, self._retry, self._required, inv.now_ms,
                               marks(it.record.id) if marks else "") for it, key, _, member in work]
        for (it, key, value, _), state in zip(work, added, strict=True):
            if (err := effect_error(state)) is not None:
                it.fail(self.name, f"could not update join state in '{self._store}': {err}", transient=err.transient)
                failed.add(key)
            elif state.closed == "complete":
                resolved = {k: True for k in self._join_keys if k in state.members}
                done: dict[str, object] = {"value": value, "resolved": resolved}
                if state.deadline_ms is not None:  # a join without a deadline shows none, not a made-up number
                    done["deadline"] = state.deadline_ms
                self._emit(it, "complete", done)
            elif state.closed:
                self._emit(it, state.closed)
            else:
                self._emit(it, "triggered")

    def _emit(self, it: Item, status: str, state: dict | None = None) -> None:
        event = dict(it.event)  # type: ignore[arg-type]
        event[self._status_key] = status
        if state is not None:
            event[self._state_key] = state
        it.event = event


def compile(ctx: StageContext) -> CompleterStage:
    return CompleterStage(ctx)
