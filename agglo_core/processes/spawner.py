"""spawner: run an executable with the event on stdin; with ``doSync`` keep its JSON answer."""

from __future__ import annotations

from collections.abc import Iterator

from pydantic import StrictBool, StrictStr

from agglo_core.config import ConditionField, ConfigModel, Int64
from agglo_core.effects import Exec
from agglo_core.pipeline import Driver, Invocation, Item, StageContext, effect_error
from agglo_core.processes.spec import CheckContext, ExecRef, Problem, ProcessSpec
from agglo_core.records import unwritable

OUTPUT = "internal:spawn:output"


class Runnable(ConfigModel):
    pathToExec: StrictStr = ""
    cmdArgs: tuple[StrictStr, ...] = ()


class Job(ConfigModel):
    runnable: Runnable | None = None


class Spawner(ConfigModel):
    name: StrictStr = ""
    condition: ConditionField | None = None
    delayInMs: Int64 = 0
    doSync: StrictBool = False
    job: Job | None = None


class SpawnerStage:
    pure = False

    def __init__(self, d: Spawner, ctx: StageContext) -> None:
        self.name = d.name
        self._cond = ctx.predicate(d.condition)
        runnable = d.job.runnable  # type: ignore[union-attr]
        self._path, self._args = runnable.pathToExec, runnable.cmdArgs  # type: ignore[union-attr]
        self._delay, self._sync, self._retry = d.delayInMs, d.doSync, ctx.retry

    def run(self, items: list[Item], inv: Invocation) -> Driver:
        cond = self._cond
        chosen = [it for it in items if cond is None or cond(it.event)]  # type: ignore[arg-type]
        if not chosen:
            return
        results = yield [Exec(self._path, self._args, it.event, self._delay, self._sync, self._retry)
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


def compile(d: Spawner, ctx: StageContext) -> SpawnerStage:
    return SpawnerStage(d, ctx)


def _check(d: Spawner, ctx: CheckContext) -> Iterator[Problem]:
    if d.job is None or d.job.runnable is None or not d.job.runnable.pathToExec:
        yield "job.runnable.pathToExec", "must name an executable"
    if d.delayInMs < 0:
        yield "delayInMs", "must not be negative"


def _executables(d: Spawner) -> Iterator[ExecRef]:
    if d.job is not None and d.job.runnable is not None and d.job.runnable.pathToExec:
        yield ExecRef("job.runnable.pathToExec", d.job.runnable.pathToExec, d.condition)


_DOC = """\
run `job.runnable.pathToExec` with `cmdArgs` and the event on
stdin, after `delayInMs`. With `doSync`, `{<name>: <its JSON output>}` is
appended to `internal:spawn:output`; without, it is fire-and-forget.

```json
{"spawner": {"name": "Notify", "doSync": true, "delayInMs": 0,
  "job": {"runnable": {"pathToExec": "/usr/local/bin/notify", "cmdArgs": ["--channel", "ci"]}}}}
```
"""

SPEC = ProcessSpec(
    kind="spawner", doc=_DOC, proto_field=5, model=Spawner, compile=compile,
    summary=f"Runs an executable with the event as JSON on stdin, after `delayInMs`; with `doSync` its JSON "
            f"answer is kept under `{OUTPUT}`. Runs only executables the deployment allows.",
    check=_check, executables=_executables,
    describe=lambda d: ["waits for its output" if d.doSync else "fire and forget"],
)
