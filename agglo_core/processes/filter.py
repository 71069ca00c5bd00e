"""filter: drop the keys whose name matches ``regex`` (or, with ``keepMatched``, keep only those).

As in binge, the rule applies at every level of nesting: a surviving map is
filtered in turn. Unlike binge, maps inside lists are filtered too, and keys
beginning with ``internal:`` always survive (agglo's own bookkeeping).
"""

from __future__ import annotations

import re
from typing import Any

from agglo_core.config import Filter
from agglo_core.pipeline import Invocation, StageContext

INTERNAL = "internal:"


class FilterStage:
    pure = True

    def __init__(self, d: Filter) -> None:
        self.name = d.name
        self._search = re.compile(d.regex).search
        self._keep = d.keepMatched

    def _map(self, m: dict) -> dict:
        search, keep, walk = self._search, self._keep, self._value
        return {k: walk(v) for k, v in m.items() if (search(k) is not None) is keep}

    def _value(self, v: Any) -> Any:
        if type(v) is dict:
            return self._map(v)
        if type(v) is list:
            return [self._value(x) for x in v]
        return v

    def apply(self, event: dict, inv: Invocation) -> dict:
        search, keep, walk = self._search, self._keep, self._value
        return {k: v if k.startswith(INTERNAL) else walk(v) for k, v in event.items()
                if k.startswith(INTERNAL) or (search(k) is not None) is keep}


def compile(d: Filter, ctx: StageContext) -> FilterStage:
    return FilterStage(d)
