"""Drives the pure core: performs its effects through connectors, retries, and reports outcomes.

Every adapter (local, Lambda, Cloud Functions) builds one ``Runtime`` per
process at cold start and feeds it batches of records.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

from agglo_core import EffectFailed, Exec, Outcome, Plan, Record
from agglo_core.effects import Effect
from handlers.connectors import Connector, Registry
from handlers.execs import ExecRunner

log = logging.getLogger("agglo.runtime")


def _target(e: Effect) -> str | None:
    return None if isinstance(e, Exec) else getattr(e, "store", None) or getattr(e, "target", None)


class Runtime:
    def __init__(self, plan: Plan, connectors: dict[str, Connector], execs: ExecRunner | None = None,
                 clock: Callable[[], float] = time.time, sleep: Callable[[float], None] = time.sleep) -> None:
        self.plan = plan
        self.connectors = connectors
        self.execs = execs or ExecRunner()
        self.clock = clock
        self.sleep = sleep

    @classmethod
    def build(cls, plan: Plan, registry: Registry, execs: ExecRunner | None = None, **kw: Any) -> Runtime:
        return cls(plan, registry.build_all(plan.config), execs, **kw)

    def process(self, records: Sequence[Record]) -> list[Outcome]:
        return self.plan.run(records, int(self.clock() * 1000), self.perform)

    def perform(self, effects: list[Effect]) -> list[Any]:
        """Perform a batch of effects, grouped per connector so each backend sees one call per crossing."""
        results: list[Any] = [None] * len(effects)
        groups: dict[str | None, list[int]] = {}
        for i, e in enumerate(effects):
            groups.setdefault(_target(e), []).append(i)
        for target, idxs in groups.items():
            connector: Any = self.execs if target is None else self.connectors.get(target)
            batch = [effects[i] for i in idxs]
            if connector is None:
                out = [EffectFailed(f"no connector for external system '{target}'")] * len(batch)
            else:
                out = self._with_retries(connector, batch)
            for i, r in zip(idxs, out, strict=True):
                results[i] = r
        return results

    def _with_retries(self, connector: Any, effects: list[Effect]) -> list[Any]:
        results: list[Any] = [None] * len(effects)
        pending = list(range(len(effects)))
        attempt = 0
        while True:
            try:
                out = connector.perform([effects[i] for i in pending])
            except Exception as err:  # a connector failure fails its effects, never the batch
                log.warning("connector %s failed: %s", type(connector).__name__, err)
                out = [EffectFailed(f"{type(err).__name__}: {err}")] * len(pending)
            retry = []
            for i, r in zip(pending, out, strict=True):
                results[i] = r
                if isinstance(r, EffectFailed) and attempt < effects[i].retry.num_retries:
                    retry.append(i)
            if not retry:
                return results
            backoff_ms = max(effects[i].retry.initial_backoff_ms for i in retry) * (2 ** attempt)
            self.sleep(backoff_ms / 1000)
            attempt += 1
            pending = retry
