"""filter's stage: drop the keys whose name matches ``regex`` (or, with ``keepMatched``, keep only those).

As in binge, the rule applies at every level of nesting: a surviving map is
filtered in turn. Unlike binge, maps inside lists are filtered too, and keys
beginning with ``internal:`` always survive (agglo's own bookkeeping).
"""

from __future__ import annotations

import re
from typing import Any

from agglo_core import regex as regex_engine
from agglo_core.codegen import Emitter
from agglo_core.ir import ProcessIR
from agglo_core.pipeline import Invocation, StageContext

INTERNAL = "internal:"
_CACHE_LIMIT = 4096  # keys whose verdicts are remembered; keys that never repeat just miss
_DROP, _KEEP, _FILTER = 0, 1, 2  # a top-level key: gone, kept as it is (internal:), kept and filtered within


class FilterStage:
    pure = True

    def __init__(self, step: ProcessIR) -> None:
        self.name = step.params["name"]
        self._search = regex_engine.compile(step.params["regex"]).search
        self._keep = step.params["keepMatched"]
        self._verdicts: dict[str, bool] = {}  # key -> survives; events repeat their keys
        self.top: dict[str, int] = {}
        """Top-level key -> _DROP, _KEEP or _FILTER, as far as known (generated code reads it too)."""

    def _survives(self, key: str) -> bool:
        verdict = self._verdicts.get(key)
        if verdict is None:
            verdict = (self._search(key) is not None) is self._keep
            if len(self._verdicts) < _CACHE_LIMIT:
                self._verdicts[key] = verdict
        return verdict

    def _map(self, m: dict) -> dict:
        survives, walk = self._survives, self.walk
        return {k: walk(v) for k, v in m.items() if survives(k)}

    def walk(self, v: Any) -> Any:
        """A value with every map in it filtered."""
        if type(v) is dict:
            return self._map(v)
        if type(v) is list:
            return [self.walk(x) for x in v]
        return v

    def top_verdict(self, key: str) -> int:
        verdict = _KEEP if key.startswith(INTERNAL) else _FILTER if self._survives(key) else _DROP
        if len(self.top) < _CACHE_LIMIT:
            self.top[key] = verdict
        return verdict

    def apply(self, event: dict, inv: Invocation) -> dict:
        top, walk = self.top, self.walk
        out = {}
        for k, v in event.items():
            verdict = top.get(k)
            if verdict is None:
                verdict = self.top_verdict(k)
            if verdict == _FILTER:
                out[k] = walk(v) if type(v) is dict or type(v) is list else v
            elif verdict == _KEEP:
                out[k] = v
        return out


_EXACT = re.compile(r"\^([^\\.\[\]{}()*+?|^$]+)\$")
"""``^text$`` with no special character between: the one key the regex matches is ``text`` itself."""


def exact_key(pattern: str) -> str | None:
    """The one key ``pattern`` matches, when it matches exactly one (RE2's ``$`` is the end of the text)."""
    shape = _EXACT.fullmatch(pattern)
    return None if shape is None else shape.group(1)


def emit(step: ProcessIR, em: Emitter) -> bool:
    """The top level inline; nested maps walked by the stage.

    Dropping one named key is a ``pop`` and a look for maps and lists to walk
    (binge's rule reaches into them); any other rule reads each key's verdict,
    cached per key as the stage caches it.
    """
    stage = FilterStage(step)
    em.wrote(None)  # keys go, maps within are replaced
    walk = em.const(stage.walk, "filter within a value")
    internal = em.const(INTERNAL)
    key = exact_key(step.params["regex"])
    if key is not None and not step.params["keepMatched"]:
        if not key.startswith(INTERNAL):  # internal: keys survive at the top level whatever their name
            em.line(f"event.pop({em.const(key)}, None)")
        # Only values replace values in the loop: the event's size, and so the iteration, stay as they are.
        with em.block("for k, v in event.items():"), \
                em.block(f"if (type(v) is dict or type(v) is list) and not k.startswith({internal}):"):
            em.line(f"event[k] = {walk}(v)")
        return True
    top, verdict = em.const(stage.top, "known verdicts"), em.const(stage.top_verdict, "verdict of a key")
    em.line("out = {}")
    with em.block("for k, v in event.items():"):
        em.line(f"verdict = {top}.get(k)")
        with em.block("if verdict is None:"):
            em.line(f"verdict = {verdict}(k)")
        with em.block(f"if verdict == {_FILTER}:"):
            em.line(f"out[k] = {walk}(v) if type(v) is dict or type(v) is list else v")
        with em.block(f"elif verdict == {_KEEP}:"):
            em.line("out[k] = v")
    em.line("event = out")
    return True


def compile(ctx: StageContext) -> FilterStage:
    return FilterStage(ctx.step)
