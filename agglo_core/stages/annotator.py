"""annotator's stage: set fields, in order, where each annotation's condition holds."""

from __future__ import annotations

from agglo_core.codegen import emit_annotator as emit
from agglo_core.conditions import compile_node
from agglo_core.errors import StageError
from agglo_core.ir import ProcessIR
from agglo_core.paths import MISSING, compile_getter, set_path, split_path
from agglo_core.pipeline import Invocation, StageContext

CURRENT_TIME = "derived:currentTime"

__all__ = ["CURRENT_TIME", "AnnotatorStage", "compile", "emit"]


class AnnotatorStage:
    pure = True

    def __init__(self, step: ProcessIR) -> None:
        self.name = step.params["name"]
        self._annotations = []
        for a in step.params["annotations"]:
            key = a["fieldKey"]
            # A top-level field (no getter) is read and written directly: the common case, and the fast one.
            self._annotations.append((key, split_path(key), compile_getter(key) if "." in key else None,
                                      a["value"], a["value"] == CURRENT_TIME, compile_node(a["condition"])))

    def apply(self, event: dict, inv: Invocation) -> dict:
        for key, segs, get, value, is_time, cond in self._annotations:
            if cond is not None and not cond(event):
                continue
            if (key in event) if get is None else (get(event) is not MISSING):
                raise StageError(f"cannot annotate '{key}': the event already has that field")
            if is_time:
                value = inv.now_iso
            event = {**event, key: value} if get is None else set_path(event, segs, value)
        return event


def compile(ctx: StageContext) -> AnnotatorStage:
    return AnnotatorStage(ctx.step)
