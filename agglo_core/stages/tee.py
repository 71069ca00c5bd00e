"""tee's stage: send (a transformation of) the event to an external system and note where it went."""

from __future__ import annotations

from typing import Any

from agglo_core.codegen import tee_prelude
from agglo_core.effects import Effect, Put
from agglo_core.errors import RECORD_FAULTS, StageError, describe
from agglo_core.ids import IdMaker
from agglo_core.ir import thaw
from agglo_core.paths import json_type
from agglo_core.pipeline import Driver, Invocation, Item, StageContext, effect_error, run_each
from agglo_core.records import find_problem
from agglo_core.stages.transformer import TransformerStage

OUTPUT = "internal:tee:output"
# binge's own strings, so consumers of its outputs keep working.
OUTPUT_TYPES = {
    "ExternalKVStore": "kvstore", "ExternalObjectStore": "object", "ExternalPubSub": "pubsub",
    "ExternalHttp": "web", "ExternalLocalFile": "localfile", "ExternalSearchIndex": "searchIndex",
}


def merge_body(body: dict, extra: dict, at: str = "") -> dict:
    """``body`` with a tee's ``additionalBody`` (``extra``) merged in, as binge merges them: maps merge key by
    key, lists append (the body's items first), and any other meeting of two values at one path (two scalars,
    even equal ones, or a map or list and something else) is a ``StageError`` naming the path (``at``: where
    ``body`` is)."""
    out = dict(body)
    for k, v in extra.items():
        if k not in out:
            out[k] = v
            continue
        cur = out[k]
        path = f"{at}.{k}" if at else k
        if type(cur) is dict and type(v) is dict:
            out[k] = merge_body(cur, v, path)
        elif type(cur) is list and type(v) is list:
            out[k] = cur + v
        else:
            raise StageError(f"additionalBody sets '{path}' to {json_type(v)}, but the body already has "
                             f"{json_type(cur)} there (maps merge and lists append; anything else clashes)")
    return out


class TeeStage:
    pure = False

    def __init__(self, ctx: StageContext) -> None:
        d = ctx.step.params
        self.name = d["name"]
        self._cond = ctx.predicate(d["condition"])
        self._target = d["outputConnectorRef"]
        self._extra = thaw(d["additionalBody"])
        # Events and what processes make are checked where they arise; so is additionalBody, here, once.
        self._checked = find_problem(self._extra) is None
        external = ctx.ir.external(self._target)
        self._output_type = OUTPUT_TYPES[external.external_type]
        self._connection = ctx.redact(external.connection_string)
        self._ids = IdMaker(ctx.partition, ctx.pipeline, self.name, "tee")
        self._retry = ctx.retry
        ref = d["transformerRef"]
        self._transformer = TransformerStage(ctx.ir.definition(ref), ctx.retry) if ref else None
        plain = self._transformer is None and not self._extra
        self._select = tee_prelude(ctx.step, None if plain else self._body_or_error) \
            if ctx.codegen and (self._transformer is None or self._transformer.pure) else None

    def _body(self, event: dict, inv: Invocation) -> dict:
        if self._transformer is None:
            body = event
        else:
            try:
                body = self._transformer.apply(event, inv)
            except RECORD_FAULTS as e:
                raise StageError(f"transformer '{self._transformer.name}': {describe(e)}") from e
        return merge_body(body, self._extra) if self._extra else body

    def run(self, items: list[Item], inv: Invocation) -> Driver:
        if len(items) == 1 and (self._transformer is None or self._transformer.pure):
            # A call of one record: one body, one Put, without the batch's lists and zips.
            it = items[0]
            cond = self._cond
            if cond is not None and not cond(it.event):  # type: ignore[arg-type]
                return
            body = self._body_or_error(it.event, inv)  # type: ignore[arg-type]
            if type(body) is StageError:
                self._refused(it, body)
                return
            key = self._ids(it.record.id)
            [result] = yield [Put(self._target, key, body, self._retry, self._checked)]
            self._note(it, key, result)
            return
        chosen: list[Item]
        if self._select is not None:  # generated: the condition and the body inline
            chosen, bodies = self._select(items, inv)
        else:
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
                self._refused(it, body)
                continue
            key = ids(it.record.id)
            sending.append((it, key))
            puts.append(Put(target, key, body, retry, self._checked))
        if not puts:
            return
        results = yield puts
        for (it, key), result in zip(sending, results, strict=True):
            self._note(it, key, result)

    def _refused(self, it: Item, body: StageError) -> None:
        it.fail(self.name, str(body), body.transient)

    def _note(self, it: Item, key: str, result: Any) -> None:
        """Where the record's body went, on its event; or its failure."""
        if result is not None and (err := effect_error(result)) is not None:
            it.fail(self.name, f"could not write to '{self._target}': {err}", transient=err.transient)
            return
        entry = {"uuid": key, "outputType": self._output_type, "connectionString": self._connection}
        if self._output_type == "web" and result is not None and result != {}:
            entry["response"] = result  # as binge: no key for an answer without a body (or an empty map)
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
        return [StageError(f"transformer '{transformer.name}': {h.error[1]}", h.transient) if h.error
                else self._merged_or_error(h.event) for h in holders]  # type: ignore[arg-type]

    def _merged_or_error(self, body: dict) -> Any:
        try:
            return merge_body(body, self._extra) if self._extra else body
        except StageError as e:
            return e


def compile(ctx: StageContext) -> TeeStage:
    return TeeStage(ctx)
