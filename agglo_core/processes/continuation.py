"""continuation: stop this pipeline for events where the condition is false (no output, no error)."""

from __future__ import annotations

from agglo_core.conditions import compile_condition
from agglo_core.config import Continuation
from agglo_core.pipeline import Invocation, StageContext


class ContinuationStage:
    pure = True

    def __init__(self, d: Continuation) -> None:
        self.name = d.name
        self._cond = compile_condition(d.condition)

    def apply(self, event: dict, inv: Invocation) -> dict | None:
        return event if self._cond is None or self._cond(event) else None


def compile(d: Continuation, ctx: StageContext) -> ContinuationStage:
    return ContinuationStage(d)
