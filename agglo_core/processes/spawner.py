"""spawner: run an executable with the event on stdin; with ``doSync`` keep its JSON answer.

The config side (models, checks, docs); the stage is ``agglo_core.stages.spawner``.
"""

from __future__ import annotations

from collections.abc import Iterator

from pydantic import StrictBool, StrictStr

from agglo_core.config import ConditionField, ConfigModel, Int64
from agglo_core.processes.spec import CheckContext, ExecRef, Problem, ProcessSpec
from agglo_core.stages import spawner as stage
from agglo_core.stages.spawner import OUTPUT


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


def _check(d: Spawner, ctx: CheckContext) -> Iterator[Problem]:
    if d.job is None or d.job.runnable is None or not d.job.runnable.pathToExec:
        yield "job.runnable.pathToExec", "must name an executable"


def _executables(d: Spawner) -> Iterator[ExecRef]:
    if d.job is not None and d.job.runnable is not None and d.job.runnable.pathToExec:
        yield ExecRef("job.runnable.pathToExec", d.job.runnable.pathToExec, d.condition)


_DOC = """\
run `job.runnable.pathToExec` with `cmdArgs` and the event on
stdin, after `delayInMs` (zero or less: at once, as in binge, whose tests use
-1). With `doSync`, `{<name>: <its JSON output>}` is appended to
`internal:spawn:output`, and the spawns of one spawner in one pipeline run one
after another in input order (a spawner that appends to a file sees the events
in order, as binge's `TestPipelinesBasic` expects); other pipelines, other
batches and exec transforms still run beside them. Without `doSync` it is
fire-and-forget: asynchronous spawns run side by side, in no set order (binge
runs them as goroutines).

```json
{"spawner": {"name": "Notify", "doSync": true, "delayInMs": 0,
  "job": {"runnable": {"pathToExec": "/usr/local/bin/notify", "cmdArgs": ["--channel", "ci"]}}}}
```
"""

SPEC = ProcessSpec(
    kind="spawner", doc=_DOC, proto_field=5, model=Spawner, compile=stage.compile,
    summary=f"Runs an executable with the event as JSON on stdin, after `delayInMs`; with `doSync` its JSON "
            f"answer is kept under `{OUTPUT}`. Runs only executables the deployment allows.",
    check=_check, executables=_executables,
    describe=lambda d: ["waits for its output" if d.doSync else "fire and forget"],
)
