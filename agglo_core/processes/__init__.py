"""One module per process type; ``compile_stage`` picks the right one."""

from __future__ import annotations

from typing import Any

from agglo_core.config import ProcessDefinition
from agglo_core.pipeline import Stage, StageContext


def compile_stage(definition: ProcessDefinition, ctx: StageContext) -> Stage:
    from agglo_core.processes import (
        aggregator,
        annotator,
        completer,
        continuation,
        entwine,
        filter,
        spawner,
        tee,
        transformer,
    )

    modules: dict[str, Any] = {
        "annotator": annotator, "aggregator": aggregator, "completer": completer, "filter": filter,
        "spawner": spawner, "tee": tee, "transformer": transformer, "continuation": continuation,
        "entwine": entwine,
    }
    return modules[definition.kind].compile(definition.body, ctx)
