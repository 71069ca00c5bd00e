"""spawner's stage: run an executable with the event on stdin; with ``doSync`` keep its JSON answer."""

from __future__ import annotations

from agglo_core.effects import Exec
from agglo_core.pipeline import Driver, Invocation, Item, StageContext, effect_error
from agglo_core.records import unwritable

OUTPUT = "internal:spawn:output"


class SpawnerStage:
    pure = False

    def __init__(self, ctx: StageContext) -> None:
        d = ctx.step.params
        self.name = d["name"]
        self._cond = ctx.predicate(d["condition"])
        runnable = d["job"]["runnable"]  # validation guarantees both
        self._path, self._args = runnable["pathToExec"], runnable["cmdArgs"]
        # binge waits only for a positive delay; its own tests spawn with -1.
        self._delay, self._sync, self._retry = max(0, d["delayInMs"]), d["doSync"], ctx.retry
        # Waited-for spawns of this stage run one after another, so their side effects follow input order.
        self._lane = f"{ctx.pipeline}/{self.name}" if self._sync else ""

    def run(self, items: list[Item], inv: Invocation) -> Driver:
        cond = self._cond
        chosen = [it for it in items if cond is None or cond(it.event)]  # type: ignore[arg-type]
        if not chosen:
            return
        results = yield [Exec(self._path, self._args, it.event, self._delay, self._sync, self._retry, self._lane)
                         for it in chosen]
        if not self._sync:
            return  # fire-and-forget
        for it, result in zip(chosen, results, strict=True):
            if (err := effect_error(result)) is not None:
                it.fail(self.name, f"'{self._path}' failed: {err}", err.transient)
                continue
            if (problem := unwritable(result, f"{OUTPUT}.{self.name}", 2)) is not None:
                it.fail(self.name, f"'{self._path}' answered what cannot be written as JSON: {problem}")
                continue
            event = it.event
            assert event is not None
            previous = event.get(OUTPUT)
            it.event = {**event, OUTPUT: [*(previous if type(previous) is list else ()), {self.name: result}]}


def compile(ctx: StageContext) -> SpawnerStage:
    return SpawnerStage(ctx)
