"""``agglo run --explain``: why an event went where it went, process by process.

For each of the first N events (one at a time, against the config's real
external systems, as ``agglo run`` would), and for each pipeline: every
process's condition results (evaluated on the process's input), what it
changed (input and output side by side, key by key), the effects it had
performed with their results, and where the event ended: an output, a stop or
an error. The explanation goes to stdout (or ``-o``) instead of the outputs.
"""

from __future__ import annotations

import copy
import json
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import IO, Any

from agglo_core import DeltasApplied, EffectFailed, JoinState, Plan, Record
from agglo_core.condition_syntax import condition_text
from agglo_core.conditions import compile_condition
from agglo_core.config import ProcessDefinition
from agglo_core.errors import RECORD_FAULTS, describe
from agglo_core.pipeline import CompiledPipeline, Invocation, Item
from agglo_core.processes import spec_of
from handlers.authoring.describe import describe_effect
from handlers.runtime.boot import UsageError, build_runtime
from handlers.sources import Unreadable
from handlers.sources.jsonfile import open_events, read_events

ABSENT = object()
_WIDTH = 48


@dataclass
class Step:
    process: str
    kind: str
    before: dict
    after: dict | None = None
    conditions: list[tuple[str, str, bool]] = field(default_factory=list)
    """(what the condition guards, the condition, its result on the input)."""
    effects: list[tuple[Any, Any]] = field(default_factory=list)
    error: str | None = None


def _conditions(d: ProcessDefinition, event: dict) -> list[tuple[str, str, bool]]:
    out = []
    for guard in spec_of(d).conditions(d.body):
        text, predicate = condition_text(guard.condition), compile_condition(guard.condition)
        if text is not None and predicate is not None:
            out.append((guard.what, text, bool(predicate(event))))
    return out


class _Watched:
    """A stage that notes what it did to the one event of each batch (``explain`` runs one at a time)."""

    def __init__(self, stage: Any, definition: ProcessDefinition, steps: list[Step]) -> None:
        self.name, self.pure = stage.name, stage.pure
        self._stage, self._definition, self._steps = stage, definition, steps

    def _start(self, event: dict) -> Step:
        d = self._definition
        step = Step(d.name, d.kind, copy.deepcopy(event), conditions=_conditions(d, event))
        self._steps.append(step)
        return step

    def apply(self, event: dict, inv: Invocation) -> dict | None:
        step = self._start(event)
        try:
            out = self._stage.apply(event, inv)
        except RECORD_FAULTS as e:
            step.error = describe(e)
            raise
        step.after = copy.deepcopy(out)
        return out

    def run(self, items: list[Item], inv: Invocation) -> Any:
        step = self._start(items[0].event)  # type: ignore[arg-type]
        driver = self._stage.run(items, inv)
        try:
            effects = next(driver)
            while True:
                results = yield effects
                step.effects.extend(zip(effects, results, strict=True))
                effects = driver.send(results)
        except StopIteration as stop:
            value = stop.value
        except RECORD_FAULTS as e:
            step.error = describe(e)
            raise
        item = items[0]
        step.after = copy.deepcopy(item.event)
        step.error = item.error[1] if item.error else None
        return value


def _watched(plan: Plan, steps: dict[str, list[Step]]) -> Plan:
    """A copy of ``plan`` whose stages note their steps into ``steps`` (per pipeline)."""
    watched = copy.copy(plan)
    config = plan.config
    assert config is not None  # explain compiles the config it is given
    watched.pipelines = tuple(
        CompiledPipeline(p.name, tuple(_Watched(stage, config.process(proc.name), steps.setdefault(p.name, []))
                                       for stage, proc in zip(p.stages, pipe.processes, strict=True)))
        for p, pipe in zip(plan.pipelines, config.pipelines, strict=True))
    return watched


# --- text ------------------------------------------------------------------------------------------------------


def _short(value: Any) -> str:
    text = "(absent)" if value is ABSENT else json.dumps(value, ensure_ascii=False)
    return text if len(text) <= _WIDTH else text[: _WIDTH - 1] + "…"


def _flat(value: Any, prefix: str = "") -> dict[str, Any]:
    """Leaves by dotted path (list elements by index, as conditions name them)."""
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    out: dict[str, Any] = {}
    for k, v in items:
        out.update(_flat(v, f"{prefix}.{k}" if prefix else str(k)))
    return out if out or not prefix else {prefix: value}


def changes(before: dict, after: dict) -> list[tuple[str, Any, Any]]:
    """(dotted key, input value, output value) for every leaf that differs; ``ABSENT`` where there is none."""
    old, new = _flat(before), _flat(after)
    keys = list(dict.fromkeys([*old, *new]))
    return [(k, old.get(k, ABSENT), new.get(k, ABSENT)) for k in keys
            if old.get(k, ABSENT) != new.get(k, ABSENT) or type(old.get(k)) is not type(new.get(k))]


def _result(result: Any) -> str:
    if isinstance(result, EffectFailed):
        return f"failed: {result.message}"
    if isinstance(result, DeltasApplied):
        return f"state before: {json.dumps(result.before)}" + (" (a redelivery: skipped)" if result.duplicates else "")
    if isinstance(result, JoinState):
        return f"join now has {', '.join(sorted(result.members))}"
    return "ok" if result is None else f"answered {_short(result)}"


def _effect_line(effect: Any, result: Any) -> str:
    target = getattr(effect, "target", None) or getattr(effect, "store", None) or getattr(effect, "path", "?")
    shown = describe_effect(effect)
    shown.pop("body", None)
    return f"{type(effect).__name__} -> {target} {json.dumps(shown, ensure_ascii=False)}: {_result(result)}"


def render_step(n: int, step: Step) -> Iterator[str]:
    yield f"  {n}. {step.process} ({step.kind})"
    for what, text, result in step.conditions:
        yield f"       {what}: {text} -> {'true' if result else 'false'}"
    for effect, result in step.effects:
        yield f"       effect: {_effect_line(effect, result)}"
    if step.error is not None:
        yield f"       failed: {step.error}"
    elif step.after is None:
        yield "       stopped here: the event goes no further in this pipeline"
    else:
        diff = changes(step.before, step.after)
        if not diff:
            yield "       unchanged"
            return
        width = max(len(k) for k, _, _ in diff)
        inputs = [_short(old) for _, old, _ in diff]
        middle = max(len("input"), *map(len, inputs))
        yield f"       {'key':<{width}}  {'input':<{middle}}  output"
        for (key, _, new), old in zip(diff, inputs, strict=True):
            yield f"       {key:<{width}}  {old:<{middle}}  {_short(new)}"


def render(number: int, record: Record, steps: dict[str, list[Step]], outputs: dict[str, dict],
           errors: dict[str, str]) -> str:
    lines = [f"event {number} ({record.id}): {json.dumps(record.payload, ensure_ascii=False)}"]
    for pipeline, pipeline_steps in steps.items():
        lines.append(f"\npipeline {pipeline}")
        for n, step in enumerate(pipeline_steps, 1):
            lines.extend(render_step(n, step))
        if pipeline in outputs:
            lines.append(f"  => output: {json.dumps(outputs[pipeline], ensure_ascii=False)}")
        elif pipeline in errors:
            lines.append(f"  => failed: {errors[pipeline]}")
        else:
            lines.append(f"  => stopped at {pipeline_steps[-1].process}: no output")
    return "\n".join(lines) + "\n"


def explain(runtime: Any, events: Iterator[tuple[int, Any]], name: str, out: IO[str]) -> int:
    plan, failed = runtime.plan, False
    for number, (line, event) in enumerate(events, 1):
        record = Record(f"{name}#{line}", event, source=name)
        if isinstance(event, Unreadable) or type(event) is not dict:
            why = event.message if isinstance(event, Unreadable) else "an event must be a JSON object"
            out.write(f"event {number} ({record.id}): {why}\n\n")
            failed = True
            continue
        steps: dict[str, list[Step]] = {}
        runtime.plan = _watched(plan, steps)
        try:
            outcome, = runtime.process([record])
        finally:
            runtime.plan = plan
        errors = {e.pipeline: f"in {e.process}: {e.message}" for e in outcome.errors if e.pipeline}
        failed = failed or bool(outcome.errors)
        out.write(render(number, record, steps, dict(outcome.outputs), errors) + "\n")
    out.flush()
    return 1 if failed else 0


def main(args: Any) -> int:
    runtime = build_runtime(args.config, args.allow_exec, args.exec_timeout, dedupe=args.dedupe)
    try:
        raw = sys.stdin.buffer if args.input == "-" else open(args.input, "rb")  # noqa: SIM115 - closed below
    except OSError as e:
        raise UsageError(f"cannot read {args.input}: {e.strerror}") from None
    name = "stdin" if args.input == "-" else args.input
    try:
        events = (item for _, item in zip(range(args.explain), read_events(open_events(raw)), strict=False))
        if args.output == "-":
            return explain(runtime, events, name, sys.stdout)
        with open(args.output, "w", encoding="utf-8") as out:
            return explain(runtime, events, name, out)
    finally:
        if raw is not sys.stdin.buffer:
            raw.close()
