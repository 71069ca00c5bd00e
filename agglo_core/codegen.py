"""Code generation: each run of pure stages of a pipeline becomes one generated Python function.

The function takes a batch's items and runs every process of the run on each
record in turn, with conditions, path reads and writes inlined as Python
expressions. The event is copied once when it enters the run and then changed in
place (nested maps on a written path are still copied: they may be shared with
the payload or another pipeline). Values from the config never become source
text: they are constants in the function's namespace (``_k0``, ``_k1``…), and
names in identifiers and comments keep only ASCII letters and digits.

A process type emits code through its spec's ``emit`` hook, reading its IR
(``agglo_core.ir``); one without a hook, or whose hook declines, runs its
interpreted stage from the generated function. Values the generated code makes
are checked exactly as the interpreted stages check them, with the same words.

This is the only module of the core allowed to call ``compile`` and ``exec``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from typing import Any

from agglo_core import conditions as cond_rt
from agglo_core.errors import RECORD_FAULTS, StageError, describe
from agglo_core.ir import Node, PipelineIR, ProcessIR
from agglo_core.paths import MISSING, compile_getter, is_index, json_type, set_path
from agglo_core.records import INT_MAX, INT_MIN, unwritable

Emit = Callable[[ProcessIR, "Emitter"], bool]
"""Writes one process's code into an ``Emitter`` (the event is the local ``event``); False declines.

One that changes the event says which top-level fields it may have changed (``Emitter.wrote``): fields read
ahead into locals (``Emitter.known``) are read from the locals until then."""

RUNTIME: dict[str, Any] = {
    "_MISSING": MISSING, "_StageError": StageError, "_FAULTS": RECORD_FAULTS, "_describe": describe,
    "_set_path": set_path, "_unwritable": unwritable, "_json_type": json_type, "_compare": cond_rt.compare,
    "_regex_of": cond_rt.regex_of, "_unary": cond_rt.unary, "_json_equal": cond_rt.json_equal,
    "_INT_MIN": INT_MIN, "_INT_MAX": INT_MAX,
}
"""Helpers every generated module sees by these names."""

_INLINE_ARITH = {"Addition": "+", "Subtract": "-", "Multiply": "*", "Modulus": "%"}
_BOOLEAN_NODES = frozenset({"cmp", "match", "and", "or", "exists", "all", "is_true"})
"""Nodes whose value is always ``True`` or ``False``."""
_ORDER_OPS = {"GreaterThan": ">", "LessThan": "<", "GreaterThanOrEqual": ">=", "LessThanOrEqual": "<="}


def safe_name(text: str, limit: int = 40) -> str:
    """``text`` with only ASCII letters and digits kept: fit for an identifier or a comment, never code."""
    return re.sub(r"[^A-Za-z0-9]", "", text)[:limit] or "x"


class Emitter:
    """The source of one generated module being written, and the namespace its constants live in."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.namespace: dict[str, Any] = dict(RUNTIME)
        self.notes: dict[str, str] = {}
        """Constant name -> what it is, for people reading the code (``repr``: never part of the code)."""
        self._scalars: dict[tuple[type, str], str] = {}
        self._depth = 0
        self._count = 0
        self.straight: int | None = None
        """The depth at which code runs for every record that has not stopped (None: nothing is read ahead)."""
        self.known: dict[str, str] = {}
        """Top-level field -> the local holding ``event.get(field, _MISSING)``, while no write can have changed it."""
        self._locals: set[str] = set()

    def const(self, value: Any, note: str | None = None) -> str:
        """The name under which ``value`` reaches the generated code (never its text)."""
        scalar = value is None or type(value) in (str, int, float, bool)
        if scalar and note is None:
            # The same value (by type and spelling: 0.0 is not -0.0, 1 is not True) is one constant.
            known = self._scalars.get((type(value), repr(value)))
            if known is not None:
                return known
        name = f"_k{self._count}"
        if scalar and note is None:
            self._scalars[(type(value), repr(value))] = name
        self._count += 1
        self.namespace[name] = value
        if note is None:
            note = repr(value) if value is None or type(value) in (str, int, float, bool, tuple) else type(value).__name__
        self.notes[name] = note if len(note) <= 100 else note[:97] + "..."
        return name

    def tmp(self) -> str:
        """A fresh local name."""
        self._count += 1
        return f"_t{self._count}"

    def line(self, text: str) -> None:
        self.lines.append("    " * self._depth + text)

    @contextmanager
    def block(self, header: str | None = None) -> Iterator[None]:
        """An indented block under ``header`` (a plain indent when None: for the caller's own header)."""
        if header is not None:
            self.line(header)
        self._depth += 1
        try:
            yield
        finally:
            self._depth -= 1

    @contextmanager
    def when(self, node: Node | None, event: str = "event") -> Iterator[None]:
        """The code inside runs only where the condition holds (no test at all when it always does)."""
        if node is None:
            yield
            return
        self.read_ahead(node, event)
        with self.block(f"if {self.cond(node, event)}:"):
            yield

    def read_ahead(self, node: Node, event: str = "event") -> None:
        """Read the top-level fields ``node`` names into locals, where every record passes (later processes
        read the same fields again: each is looked up once until something writes it)."""
        if self.straight != self._depth:
            return
        for field in _top_fields(node):
            if field not in self.known:
                name = f"v_{safe_name(field, 30)}"
                while name in self._locals:
                    name += "_"
                self._locals.add(name)
                self.line(f"{name} = {event}.get({self.const(field)}, _MISSING)")
                self.known[field] = name

    def wrote(self, field: str | None) -> None:
        """The event's top-level ``field`` (None: any field) may have changed: read it from the event again."""
        if field is None:
            self.known.clear()
        else:
            self.known.pop(field, None)

    def build(self, name: str, what: str, label: str = "") -> Callable[..., Any]:
        """The function ``name`` the lines written so far define; tracebacks show it as ``<agglo what label>``."""
        code = compile("\n".join(self.lines) + "\n", f"<agglo {what} {safe_name(label)}>", "exec")
        exec(code, self.namespace)  # the namespace holds every config value; the source holds none
        fn: Callable[..., Any] = self.namespace[name]
        return fn

    def source(self) -> str:
        return "\n".join(self.lines) + "\n"

    def stop(self) -> None:
        """This pipeline stops for the record: no output, no error."""
        self.line("it.event = None")
        self.line("stopped = True")
        self.line("continue")

    def fail(self, message_expr: str) -> None:
        self.line(f"raise _StageError({message_expr})")

    def get(self, segs: Sequence[str], event: str = "event") -> str:
        """An expression for the value at ``segs`` in ``event``, or ``_MISSING``."""
        local = self.known.get(segs[0]) if event in _EVENT_NAMES else None
        if len(segs) == 1:
            return local or f"{event}.get({self.const(segs[0])}, _MISSING)"
        if len(segs) <= 4 and not any(is_index(s) for s in segs[1:]):
            # Maps all the way down (no segment could index a list): each step inline, no getter call.
            node = local or f"{event}.get({self.const(segs[0])})"  # _MISSING, like None, is no map
            for seg in segs[1:-1]:
                t, first = self.bind(node)
                node = f"({t}.get({self.const(seg)}) if type({first}) is dict else None)"
            t, first = self.bind(node)
            return f"({t}.get({self.const(segs[-1])}, _MISSING) if type({first}) is dict else _MISSING)"
        path = ".".join(segs)
        return f"{self.const(compile_getter(path), f'the value at {path!r}')}({event})"

    def cond(self, node: Node, event: str = "event") -> str:
        """A condition node as a Python expression that is ``True`` or ``False``, as ``conditions`` decides."""
        kind = node[0]
        if kind == "exists":
            _, segs, want = node
            if len(segs) == 1 and (event not in _EVENT_NAMES or segs[0] not in self.known):
                return f"({self.const(segs[0])} {'in' if want else 'not in'} {event})"
            return f"({self.get(segs, event)} {'is not' if want else 'is'} _MISSING)"
        if kind == "all":
            return "(" + " and ".join(self.cond(n, event) for n in node[1]) + ")"
        if kind == "is_true":
            return f"({self.value(node[1], event)} is True)"
        return self.value(node, event)

    def value(self, node: Node, event: str = "event") -> str:
        """A condition node as an expression for its value (``_MISSING`` for no value)."""
        kind = node[0]
        if kind == "const":
            return self.const(node[1])
        if kind == "var":
            return self.get(node[1], event)
        if kind in ("exists", "all", "is_true"):
            return self.cond(node, event)
        if kind == "cmp":
            return self._comparison(node, event)
        if kind == "match":
            return self._match(node, event)
        if kind in ("and", "or"):
            return f"({self._is_true(node[1], event)} {kind} {self._is_true(node[2], event)})"
        if kind == "arith":
            rhs = node[3]
            if node[1] in _INLINE_ARITH and rhs[0] == "const" and type(rhs[1]) is int and 0 < abs(rhs[1]) < 2 ** 53:
                # A small nonzero integer constant: on any number these cannot raise, so the operator is inline.
                t, first = self.bind(self.value(node[2], event))
                return (f"({t} {_INLINE_ARITH[node[1]]} {self.const(rhs[1])} if (type({first}) is int "
                        f"or type({t}) is float) else _MISSING)")
            fn = self.const(cond_rt.BINARY[node[1]], node[1])
            return f"{fn}({self.value(node[2], event)}, {self.value(node[3], event)})"
        if kind == "unary":
            return f"_unary({self.const(node[1])}, {self.value(node[2], event)})"
        raise AssertionError(f"unknown condition node {kind!r}")

    def bind(self, expr: str) -> tuple[str, str]:
        """(a name for ``expr``'s value, an argument that computes it first): a local is its own name."""
        if expr.isidentifier():
            return expr, expr
        t = self.tmp()
        return t, f"{t} := {expr}"

    def _is_true(self, node: Node, event: str) -> str:
        """An expression that is True exactly when the node's value is ``True``."""
        if node[0] in _BOOLEAN_NODES:
            return self.value(node, event)  # already True or False
        return f"({self.value(node, event)} is True)"

    def _comparison(self, node: Node, event: str) -> str:
        _, op, lhs, rhs = node
        left = self.value(lhs, event)
        if rhs[0] == "const" and (type(rhs[1]) is str or type(rhs[1]) in (int, float)):
            lit = self.const(rhs[1])
            if type(rhs[1]) is str and op == "Equal":
                return f"({left} == {lit})"  # only a string equals a string
            t, first = self.bind(left)
            if type(rhs[1]) is str:
                test = f"type({first}) is str"
            else:
                test = f"(type({first}) is int or type({t}) is float)"
            py = "==" if op == "Equal" else "!=" if op == "NotEqual" else _ORDER_OPS[op]
            return f"({test} and {t} {py} {lit})"
        return f"_compare({self.const(op)}, {left}, {self.value(rhs, event)})"

    def _match(self, node: Node, event: str) -> str:
        _, want, lhs, rhs = node
        t, first = self.bind(self.value(lhs, event))
        found = "is not None" if want else "is None"
        if rhs[0] == "const" and type(rhs[1]) is str:
            from agglo_core import regex as regex_engine

            plain = regex_engine.as_text_search(rhs[1])
            if plain is not None:  # a literal (anchored or not): str's own search, no regex at all
                text, at_start = plain
                found = f"{t}.startswith({self.const(text)})" if at_start else f"{self.const(text)} in {t}"
                return f"(type({first}) is str and {'' if want else 'not '}{found})"
            search = self.const(regex_engine.compile(rhs[1]).search, f"search for {rhs[1]!r}")
            return f"(type({first}) is str and {search}({t}) {found})"
        cache, p = self.const({}), self.tmp()
        return (f"(type({first}) is str and ({p} := _regex_of({self.value(rhs, event)}, {cache})) is not None "
                f"and {p}.search({t}) {found})")


_EVENT_NAMES = ("event", "src")
"""The names the event has in a generated run (``src``: the event as a transformer found it)."""


def _top_fields(node: Node) -> list[str]:
    """The top-level fields a condition node reads whatever the event holds, in the order it reads them.

    A field read only on one side of a short circuit (the right of ``and``, ``or``, a later test of ``all``)
    is left out: reading it ahead would undo the short circuit.
    """
    kind = node[0]
    if kind in ("var", "exists"):
        return [node[1][0]]
    if kind in ("cmp", "arith"):
        children = [node[2], node[3]]
    elif kind == "match":
        children = [node[2]]  # the pattern is made only for a string
    elif kind in ("and", "or", "is_true", "unary"):
        children = [node[-1]] if kind == "unary" else [node[1]]
    elif kind == "all":
        children = list(node[1][:1])
    else:
        children = []
    out: list[str] = []
    for child in children:
        out += [f for f in _top_fields(child) if f not in out]
    return out


def compile_predicate(node: Node | None) -> Callable[[dict], bool] | None:
    """A condition node as one generated function of an event (None when it always holds)."""
    if node is None:
        return None
    em = Emitter()
    with em.block("def condition(event):"):
        em.line(f"return {em.cond(node)}")
    fn: Callable[[dict], bool] = em.build("condition", "condition")
    return fn


@dataclass(frozen=True, slots=True)
class GeneratedRun:
    """Consecutive pure stages of one pipeline as one generated function over a batch's items."""

    name: str
    stages: tuple[Any, ...]
    run_items: Callable[[list[Any], Any], bool]
    """(items, invocation) -> True when some record stopped or failed; updates the items in place."""
    source: str
    notes: tuple[tuple[str, str], ...] = ()
    """(constant, what it is): the values the source names, for people to read beside it."""
    pure: bool = True


def generate_run(pipeline: PipelineIR, first: int, stages: Sequence[Any], emitters: Mapping[str, Emit],
                 copy: bool = True) -> GeneratedRun:
    """One function for ``stages`` (pure, interpreted), the processes ``first``… of ``pipeline``.

    ``copy``: the events arriving may be seen elsewhere (an effect was handed them), so copy each first.
    """
    em = Emitter()
    procs = pipeline.processes[first:first + len(stages)]
    fn = f"run_{safe_name(pipeline.name)}_{first}_{'_'.join(safe_name(p.name, 20) for p in procs)}"
    em.line(f"def {fn}(items, inv):")
    with em.block():
        em.line("stopped = False")
        with em.block("for it in items:"):
            em.line("event = dict(it.event)" if copy else "event = it.event")
            for i, (proc, stage) in enumerate(zip(procs, stages, strict=True)):
                em.line(f"# {first + i}: {proc.kind} {safe_name(proc.name)}")
                with em.block("try:"):
                    emit = emitters.get(proc.kind)
                    mark, known = len(em.lines), dict(em.known)
                    em.straight = em._depth
                    if emit is None or not emit(proc, em):
                        del em.lines[mark:]
                        em.known = known
                        em.wrote(None)
                        em.line(f"event = {em.const(stage.apply, f'the interpreted {proc.kind} stage')}(event, inv)")
                        with em.block("if event is None:"):
                            em.stop()
                    if len(em.lines) == mark:
                        em.line("pass")
                with em.block("except _FAULTS as e:"):
                    em.line(f"it.fail({em.const(stage.name)}, _describe(e))")
                    em.line("stopped = True")
                    em.line("continue")
            em.line("it.event = event")
        em.line("return stopped")
    run = em.build(fn, "pipeline", pipeline.name)
    name = stages[0].name if len(stages) == 1 else "+".join(s.name for s in stages)
    return GeneratedRun(name, tuple(stages), run, em.source(), tuple(em.notes.items()))


# --- emitters of the pure process types ---------------------------------------------------------------------

CURRENT_TIME = "derived:currentTime"
_NUMBER_MAPS = {"TransformMapAdd": ("+", "mapAddArgs"), "TransformMapMult": ("*", "mapMultArgs")}
"""Transformations that, on a number, are one operator with the number in their arguments."""


def emit_annotator(proc: ProcessIR, em: Emitter) -> bool:
    for a in proc.params["annotations"]:
        key: str = a["fieldKey"]
        segs = tuple(key.split("."))
        value = "inv.now_iso" if a["value"] == CURRENT_TIME else em.const(a["value"])
        taken = em.const(f"cannot annotate '{key}': the event already has that field")
        with em.when(a["condition"]):
            if len(segs) == 1:
                k = em.const(key)
                with em.block(f"if {em.cond(('exists', segs, True))}:"):
                    em.fail(taken)
                em.line(f"event[{k}] = {value}")
            else:
                with em.block(f"if {em.get(segs)} is not _MISSING:"):
                    em.fail(taken)
                # Maps along the path may be shared with the payload: set_path copies them.
                em.line(f"event = _set_path(event, {em.const(segs)}, {value})")
        em.wrote(segs[0])
    return True


def emit_continuation(proc: ProcessIR, em: Emitter) -> bool:
    node = proc.params["condition"]
    if node is not None:
        em.read_ahead(node)
        with em.block(f"if not {em.cond(node)}:"):
            em.stop()
    return True


def emit_transformer(proc: ProcessIR, em: Emitter) -> bool:
    from agglo_core.transforms import ExecTransform, MapRegex, transformation_of

    specs = proc.params["specs"]
    fns = [transformation_of(s["transformation"]) for s in specs]
    if any(isinstance(fn, ExecTransform) for fn in fns):
        return False  # runs an executable: the interpreted stage drives its effects
    forward = proc.params["forwardInputFields"]
    em.line("src = event")
    if forward:
        # Later specs read the input: write into a copy unless nothing reads after the one write.
        alone = len(specs) == 1 and specs[0]["sourceField"]
        em.line("out = event" if alone else "out = dict(event)")
    else:
        em.line(f"out = {{k: v for k, v in event.items() if k.startswith({em.const('internal:')})}}")
    for s, fn in zip(specs, fns, strict=True):
        source, target = s["sourceField"], s["targetField"]
        segs = tuple(target.split(".")) if target else None
        with em.when(s["transformation"]["condition"], "src"):
            if source:
                em.line(f"v = {em.get(tuple(source.split('.')), 'src')}")
            else:
                em.line("v = src")
            with em.block("if v is not _MISSING:") if source else nullcontext():
                ttype = s["transformation"]["transformationType"]
                apply = em.const(fn, ttype)
                unwritable = f"_unwritable(v, {em.const(target)}, {len(segs) if segs else 0})"
                cannot = em.const("the result cannot be written as JSON: ")
                if ttype in _NUMBER_MAPS:  # a number, the usual value: the operator inline, the check too
                    operand = em.const(s["transformation"][_NUMBER_MAPS[ttype][1]]["value"])
                    with em.block("if type(v) is int or type(v) is float:"):
                        em.line(f"v = v {_NUMBER_MAPS[ttype][0]} {operand}")
                        # A finite float, or an integer in the 64-bit range; the words from the general check.
                        with em.block("if (v - v != 0.0 if type(v) is float else not _INT_MIN <= v <= _INT_MAX):"):
                            em.fail(f"{cannot} + {unwritable}")
                with em.block("else:") if ttype in _NUMBER_MAPS else nullcontext():
                    if isinstance(fn, MapRegex):  # a string, the usual value, without the type dispatch
                        em.line(f"v = {em.const(fn.on_text, 'its replacement in a string')}(v) if type(v) is str "
                                f"else {apply}(v)")
                    else:
                        em.line(f"v = {apply}(v)")
                    with em.block(f"if type(v) is not str and (p := {unwritable}) is not None:"):
                        em.fail(f"{cannot} + p")
                if segs is None:
                    with em.block("if type(v) is not dict:"):
                        em.fail(f"{em.const('an empty targetField merges a map into the event, but the result is ')}"
                                " + _json_type(v)")
                    em.line("out.update(v)")
                elif len(segs) == 1:
                    em.line(f"out[{em.const(target)}] = v")
                else:
                    em.line(f"out = _set_path(out, {em.const(segs)}, v)")
    em.line("event = out")
    if not forward:
        em.wrote(None)
    for s in specs:
        em.wrote(s["targetField"].split(".")[0] if s["targetField"] else None)
    return True


# --- the per-record preludes of effectful stages -------------------------------------------------------------

@contextmanager
def selecting(em: Emitter, step: ProcessIR, args: str = "items", gathers: tuple[str, ...] = ("out",)
              ) -> Iterator[None]:
    """An effectful stage's prelude, ``def select(<args>)``: the body runs for each item whose condition
    holds (``it``, its ``event``) and appends to the lists ``gathers``, which ``select`` returns."""
    with em.block(f"def select({args}):"):
        for name in gathers:
            em.line(f"{name} = []")
        with em.block("for it in items:"):
            em.line("event = it.event")
            if step.params["condition"] is not None:
                with em.block(f"if not {em.cond(step.params['condition'])}:"):
                    em.line("continue")
            yield
        em.line(f"return {', '.join(gathers)}")

def tee_prelude(step: ProcessIR, body: Callable[[dict, Any], Any] | None
                ) -> Callable[[list[Any], Any], tuple[list[Any], list[Any]]]:
    """A tee's records to send and their bodies, as generated code: ``(items, inv) -> (chosen, bodies)``.

    ``body``: the body of an event (or the ``StageError`` it fails with); None when the body is the event.
    """
    em = Emitter()
    with selecting(em, step, "items, inv", ("chosen", "bodies")):
        em.line("chosen.append(it)")
        em.line("bodies.append(event)" if body is None else
                f"bodies.append({em.const(body, 'the body of an event')}(event, inv))")
    fn: Callable[[list[Any], Any], tuple[list[Any], list[Any]]] = em.build("select", "tee", step.name)
    return fn


def completer_prelude(step: ProcessIR, key_prefix: str, render: Callable[[Any], str], fault: str
                      ) -> Callable[[list[Any]], list[tuple[Any, str, Any, str]]]:
    """A completer's records to join, as generated code: ``items -> [(item, state key, value, join key)]``.

    The value is that of the first join key present, its state key ``key_prefix`` and its ``render``ing; a
    map or list that cannot be written as JSON fails the record (``fault``: where such a value would be
    written, for the message) before any effect.
    """
    em = Emitter()
    name = step.params["name"]
    join_keys: list[str] = list(step.params["completion"]["joinKeys"])
    with selecting(em, step):
        for i, join_key in enumerate(join_keys):
            # The first join key present gives the value: each next one is read only when this one is absent.
            with em.block("if value is _MISSING:") if i else nullcontext():
                em.line(f"value = {em.get(tuple(join_key.split('.')))}")
                em.line(f"join_key = {em.const(join_key)}")
        with em.block("if value is _MISSING:"):
            em.line("continue")
        with em.block(f"if (type(value) is dict or type(value) is list) and "
                      f"(problem := _unwritable(value, {em.const(fault)}, 2)) is not None:"):
            em.line(f"it.fail({em.const(name)}, "
                    f"{em.const('the completed event could not be written as JSON: ')} + problem)")
            em.line("continue")
        em.line(f"out.append((it, {em.const(key_prefix)} + {em.const(render, 'a value as text')}(value), value, "
                "join_key))")
    fn: Callable[[list[Any]], list[tuple[Any, str, Any, str]]] = em.build("select", "completer", step.name)
    return fn
