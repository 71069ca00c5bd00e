"""annotator: set fields, in order, where each annotation's condition holds."""

from __future__ import annotations

from agglo_core.conditions import compile_condition
from agglo_core.config import Annotator
from agglo_core.errors import StageError
from agglo_core.paths import MISSING, compile_getter, set_path, split_path
from agglo_core.pipeline import Invocation, StageContext

CURRENT_TIME = "derived:currentTime"


class AnnotatorStage:
    pure = True

    def __init__(self, d: Annotator) -> None:
        self.name = d.name
        self._annotations = [
            # A top-level field (no getter) is read and written directly: the common case, and the fast one.
            (a.fieldKey, split_path(a.fieldKey), compile_getter(a.fieldKey) if "." in a.fieldKey else None,
             a.value, a.value == CURRENT_TIME, compile_condition(a.condition))
            for a in d.annotations
        ]

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


def compile(d: Annotator, ctx: StageContext) -> AnnotatorStage:
    return AnnotatorStage(d)
