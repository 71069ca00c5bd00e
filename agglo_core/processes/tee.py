"""tee: send (a transformation of) the event to an external system and note where it went."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from pydantic import Field, StrictStr

from agglo_core.config import ConditionField, ConfigModel
from agglo_core.effects import Effect, Put
from agglo_core.errors import RECORD_FAULTS, StageError, describe
from agglo_core.ids import IdMaker
from agglo_core.ir import definition_ir
from agglo_core.pipeline import Driver, Invocation, Item, StageContext, effect_error, run_each
from agglo_core.processes.spec import CheckContext, ExternalRef, Finding, LintContext, Problem, ProcessSpec
from agglo_core.processes.transformer import TransformerStage
from agglo_core.records import find_problem

OUTPUT = "internal:tee:output"
# binge's own strings, so consumers of its outputs keep working.
OUTPUT_TYPES = {
    "ExternalKVStore": "kvstore", "ExternalObjectStore": "object", "ExternalPubSub": "pubsub",
    "ExternalHttp": "web", "ExternalLocalFile": "localfile", "ExternalSearchIndex": "searchIndex",
}


class Tee(ConfigModel):
    name: StrictStr = ""
    condition: ConditionField | None = None
    additionalBody: dict[str, Any] = Field(default_factory=dict)
    transformerRef: StrictStr = ""
    outputConnectorRef: StrictStr = ""


def deep_merge(base: dict, extra: dict) -> dict:
    """``base`` with ``extra`` merged in; maps merge recursively, anything else in ``extra`` wins."""
    out = dict(base)
    for k, v in extra.items():
        cur = out.get(k)
        out[k] = deep_merge(cur, v) if type(cur) is dict and type(v) is dict else v
    return out


class TeeStage:
    pure = False

    def __init__(self, d: Tee, ctx: StageContext) -> None:
        self.name = d.name
        self._cond = ctx.predicate(d.condition)
        self._target = d.outputConnectorRef
        self._extra = dict(d.additionalBody)
        # Events and what processes make are checked where they arise; so is additionalBody, here, once.
        self._checked = find_problem(self._extra) is None
        external = ctx.config.external(d.outputConnectorRef)
        self._output_type = OUTPUT_TYPES[external.externalType.value]
        self._connection = ctx.redact(external.connectionString)
        self._ids = IdMaker(ctx.partition, ctx.pipeline, d.name, "tee")
        self._retry = ctx.retry
        self._transformer = (TransformerStage(definition_ir(ctx.config.process(d.transformerRef)), ctx.retry)
                             if d.transformerRef else None)

    def _body(self, event: dict, inv: Invocation) -> dict:
        body = event if self._transformer is None else self._transformer.apply(event, inv)
        return deep_merge(body, self._extra) if self._extra else body

    def run(self, items: list[Item], inv: Invocation) -> Driver:
        cond = self._cond
        chosen = [it for it in items if cond is None or cond(it.event)]  # type: ignore[arg-type]
        if self._transformer is not None and not self._transformer.pure:
            bodies = yield from self._bodies_via_exec(chosen)
        else:
            bodies = [self._body_or_error(it.event, inv) for it in chosen]  # type: ignore[arg-type]
        sending: list[tuple[Item, str]] = []
        puts: list[Effect] = []
        ids, target, retry = self._ids, self._target, self._retry
        for it, body in zip(chosen, bodies, strict=True):
            if type(body) is StageError:
                it.fail(self.name, f"transformer '{self._transformer.name}': {body}")  # type: ignore[union-attr]
                continue
            key = ids(it.record.id)
            sending.append((it, key))
            puts.append(Put(target, key, body, retry, self._checked))
        if not puts:
            return
        results = yield puts
        web = self._output_type == "web"
        for (it, key), result in zip(sending, results, strict=True):
            if result is not None and (err := effect_error(result)) is not None:
                it.fail(self.name, f"could not write to '{target}': {err}", transient=err.transient)
                continue
            entry = {"uuid": key, "outputType": self._output_type, "connectionString": self._connection}
            if web:
                entry["response"] = result
            event = it.event
            assert event is not None
            previous = event.get(OUTPUT)
            it.event = {**event, OUTPUT: [*(previous if type(previous) is list else ()), entry]}

    def _body_or_error(self, event: dict, inv: Invocation) -> Any:
        try:
            return self._body(event, inv)
        except RECORD_FAULTS as e:
            return StageError(describe(e))

    def _bodies_via_exec(self, chosen: list[Item]) -> Driver:
        holders = [Item(it.record, it.event) for it in chosen]  # type: ignore[arg-type]
        transformer = self._transformer
        assert transformer is not None
        yield from run_each(holders, transformer.name, lambda h: transformer.drive(h.event))  # type: ignore[arg-type]
        return [StageError(h.error[1]) if h.error else deep_merge(h.event, self._extra)  # type: ignore[arg-type]
                for h in holders]


def compile(d: Tee, ctx: StageContext) -> TeeStage:
    return TeeStage(d, ctx)


def _check(d: Tee, ctx: CheckContext) -> Iterator[Problem]:
    ref = d.transformerRef
    if not ref or ref in ctx.invalid_names:
        return
    if ref not in ctx.processes:
        yield "transformerRef", f"no transformer named '{ref}'"
    elif ctx.processes[ref].kind != "transformer":
        yield "transformerRef", f"'{ref}' is a {ctx.processes[ref].kind}, not a transformer"


def _lint(d: Tee, ctx: LintContext) -> Iterator[Finding]:
    if d.transformerRef:
        t = ctx.config.process(d.transformerRef).body
        if not t.forwardInputFields and not t.specs:
            yield Finding("transformerRef", "tee-drops-every-field",
                          f"transformer '{t.name}' has no specs and does not forward input fields, so the tee "
                          "writes no field of the event")


def _describe(d: Tee) -> list[str]:
    lines = [f"through {d.transformerRef}"] if d.transformerRef else []
    if d.additionalBody:
        lines.append(f"+ {json.dumps(d.additionalBody, ensure_ascii=False)}")
    return lines


_DOC = """\
send the event (through `transformerRef`, deep-merged with
`additionalBody`) to `outputConnectorRef`, and append
`{"uuid", "outputType", "connectionString"}` to `internal:tee:output` (plus
`"response"` for HTTP; `outputType` is binge's `kvstore`, `object`,
`localfile`, `web`, `pubsub`). The uuid is a deterministic function of the
record id, partition, pipeline and tee, so a redelivered record overwrites
what it wrote before.

```json
{"tee": {"name": "Forward to Test", "outputConnectorRef": "ServiceB", "transformerRef": "APIChange",
  "additionalBody": {"routedTest": true},
  "condition": {"expression": {"comparator": {"lhs": {"variable": {"name": "doTest"}},
                                              "rhs": {"literal": "true"}, "op": "Equal"}}}}}
```
"""

SPEC = ProcessSpec(
    kind="tee", doc=_DOC, proto_field=6, model=Tee, compile=compile,
    summary=f"Writes the event (or what `transformerRef` makes of it, plus `additionalBody`) to an external "
            f"system under a key derived from the record, and notes where under `{OUTPUT}`.",
    externals=(ExternalRef("outputConnectorRef", None, "output", frozenset({"Put"})),),
    check=_check, lint=_lint, uses=lambda d: [d.transformerRef] if d.transformerRef else [], describe=_describe,
)
