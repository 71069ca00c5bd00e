"""transformer's stage: build an output event from ``specs`` of sourceField -> transformation -> targetField."""

from __future__ import annotations

from typing import Any

from agglo_core.codegen import emit_transformer as emit
from agglo_core.conditions import compile_node
from agglo_core.effects import Exec, RetryPolicy
from agglo_core.errors import StageError
from agglo_core.ir import ProcessIR
from agglo_core.paths import MISSING, compile_getter, json_type, set_path, split_path
from agglo_core.pipeline import Driver, Invocation, Item, StageContext, effect_error, run_each
from agglo_core.records import unwritable
from agglo_core.transforms import ExecTransform, transformation_of

INTERNAL = "internal:"

__all__ = ["INTERNAL", "TransformerStage", "compile", "emit"]


class TransformerStage:
    def __init__(self, step: ProcessIR, retry: RetryPolicy) -> None:
        self.name = step.params["name"]
        self._forward = step.params["forwardInputFields"]
        self._retry = retry
        self._specs = [
            (compile_node(s["transformation"]["condition"]),
             compile_getter(s["sourceField"]) if s["sourceField"] else None,
             split_path(s["targetField"]) if s["targetField"] else None, s["targetField"],
             transformation_of(s["transformation"]))
            for s in step.params["specs"]
        ]
        self.pure = not any(isinstance(s[-1], ExecTransform) for s in self._specs)

    def _start(self, event: dict) -> dict:
        if self._forward:
            return event
        return {k: v for k, v in event.items() if k.startswith(INTERNAL)}

    @staticmethod
    def _put(out: dict, segs: tuple[str, ...] | None, target: str, value: Any) -> dict:
        # What the transformation made (a sum past 64 bits, an infinite product, the event copied into
        # itself too deep) must still be writable: otherwise this record fails here, before any effect.
        if type(value) is not str and (problem := unwritable(value, target, len(segs) if segs else 0)) is not None:
            raise StageError(f"the result cannot be written as JSON: {problem}")
        if segs is not None:
            return set_path(out, segs, value)
        if type(value) is not dict:
            raise StageError(f"an empty targetField merges a map into the event, but the result is "
                             f"{json_type(value)}")
        return {**out, **value}

    def apply(self, event: dict, inv: Invocation) -> dict:
        out = self._start(event)
        for cond, get, segs, target, fn in self._specs:
            if cond is not None and not cond(event):
                continue
            value = event if get is None else get(event)
            if value is MISSING:
                continue
            out = self._put(out, segs, target, fn(value))  # type: ignore[operator]  # pure: no executables
        return out

    def run(self, items: list[Item], inv: Invocation) -> Driver:
        yield from run_each(items, self.name, lambda it: self.drive(it.event))  # type: ignore[arg-type]

    def drive(self, event: dict) -> Driver:
        """This transformer on one event, running executables through exec effects."""
        out = self._start(event)
        for cond, get, segs, target, fn in self._specs:
            if cond is not None and not cond(event):
                continue
            value = event if get is None else get(event)
            if value is MISSING:
                continue
            if isinstance(fn, ExecTransform):
                value = yield from self._exec(fn, value)
            else:
                value = fn(value)
            out = self._put(out, segs, target, value)
        return out

    def _exec(self, fn: ExecTransform, value: Any) -> Driver:
        if fn.kind == "map":
            return (yield from self._exec_map(fn.path, value))
        if type(value) is not list:
            raise StageError(f"a fold with '{fn.path}' needs a list, got {json_type(value)}")
        if not value:
            return None
        items = value[::-1] if fn.kind == "rightfold" else value
        acc = items[0]
        for x in items[1:]:
            [acc] = yield [Exec(fn.path, (), {"acc": acc, "value": x}, retry=self._retry)]
            _check_result(fn.path, acc)
        return acc

    def _exec_map(self, path: str, value: Any) -> Driver:
        """Map an executable over a list's elements, a map's values, or a single value."""
        inputs = list(value.values()) if type(value) is dict else value if type(value) is list else [value]
        results = yield [Exec(path, (), x, retry=self._retry) for x in inputs]
        for r in results:
            _check_result(path, r)
        if type(value) is dict:
            return dict(zip(value, results, strict=True))
        return list(results) if type(value) is list else results[0]


def _check_result(path: str, result: Any) -> None:
    if (err := effect_error(result)) is not None:
        raise StageError(f"'{path}' failed: {err}", err.transient)


def compile(ctx: StageContext) -> TransformerStage:
    return TransformerStage(ctx.step, ctx.retry)
