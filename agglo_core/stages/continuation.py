"""continuation's stage: stop this pipeline for events where the condition is false."""

from __future__ import annotations

from agglo_core.codegen import emit_continuation as emit
from agglo_core.conditions import compile_node
from agglo_core.ir import ProcessIR
from agglo_core.pipeline import Invocation, StageContext

__all__ = ["ContinuationStage", "compile", "emit"]


class ContinuationStage:
    pure = True

    def __init__(self, step: ProcessIR) -> None:
        self.name = step.params["name"]
        self._cond = compile_node(step.params["condition"])

    def apply(self, event: dict, inv: Invocation) -> dict | None:
        return event if self._cond is None or self._cond(event) else None


def compile(ctx: StageContext) -> ContinuationStage:
    return ContinuationStage(ctx.step)
