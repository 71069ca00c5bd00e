"""Drives the pure core: performs its effects through connectors, retries, and reports outcomes.

Every adapter (local, Lambda, Cloud Functions) builds one ``Runtime`` per
process at cold start and feeds it batches of records.
"""

from __future__ import annotations

import functools
import gc
import logging
import random
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from agglo_core import EffectFailed, Exec, Outcome, Plan, Record, RecordError
from agglo_core.effects import Effect, Put, TickerCall
from agglo_core.ids import IdMaker
from agglo_core.pipeline import StageObserver
from handlers.connectors import Connector, Registry
from handlers.runtime.execs import ExecRunner
from handlers.runtime.settlement import (
    DEFAULT_LIMITS,
    RetryBudget,
    RetryLimits,
    SettlementPolicy,
    Verdict,
    backoff_s,
)
from handlers.sources import Unreadable

log = logging.getLogger("agglo.runtime")
_DEAD_LETTER_IDS = IdMaker("dead-letter")


class CollectorPause:
    """The cyclic garbage collector off while batches run (re-entrant across threads).

    A batch's objects are freed by reference counting when it ends; collections in
    the middle of one walk an ever larger heap for little, which on a big heap is a
    third of the time. Collections resume between batches. Under overlapping batches
    (``agglo serve``'s threads) there may never be a moment between batches, so a
    batch that ends after the collector has been off for ``max_pause_s`` or
    ``max_batches`` batches runs a collection itself: cycles are never kept for long.
    """

    def __init__(self, max_pause_s: float = 1.0, max_batches: int = 256,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._lock = threading.Lock()
        self._depth = 0
        self._resume = False
        self._max_pause_s, self._max_batches, self._clock = max_pause_s, max_batches, clock
        self._since = 0.0  # when the collector last ran (or was paused)
        self._ended = 0  # batches ended since then
        self.forced = 0
        """Collections run because batches kept overlapping (for tests and metrics)."""

    def __enter__(self) -> None:
        with self._lock:
            self._depth += 1
            if self._depth == 1:
                self._resume = gc.isenabled()
                gc.disable()
                self._since, self._ended = self._clock(), 0

    def __exit__(self, *exc: object) -> None:
        with self._lock:
            self._depth -= 1
            if not self._resume:
                return  # the application keeps the collector off: so do we
            if self._depth == 0:
                gc.enable()
                return
            self._ended += 1
            now = self._clock()
            if now - self._since < self._max_pause_s and self._ended < self._max_batches:
                return
            self._since, self._ended = now, 0
            self.forced += 1
        gc.collect()  # outside the lock: other batches start and end meanwhile


_collector_paused = CollectorPause()
_init_heap_frozen = False


def freeze_init_heap() -> None:
    """Take what exists once the first runtime is built (modules, the plan, connectors, clients) out of the
    collector's sight, once per process: they live as long as it does, and each full collection walked them
    all again (at a batch of one record, most of the collector's cost). Objects made later are collected as
    ever; a second runtime in the same process (tests, tools) freezes nothing more."""
    global _init_heap_frozen
    if not _init_heap_frozen:
        _init_heap_frozen = True
        gc.freeze()  # no collection first: that would add its time to every cold start

_TICKERS = "\0tickers"
"""The group of ``TickerCall`` effects (no external system: they go to the URL they name)."""


def _target(e: Effect) -> str | None:
    """The external system an effect goes to (None: an executable)."""
    kind = type(e)
    if kind is Put:
        return e.target  # type: ignore[union-attr]
    if kind is TickerCall:
        return _TICKERS
    return None if kind is Exec else e.store  # type: ignore[union-attr]


class Runtime:
    """``clock``, ``sleep`` and ``rand`` are the only time and chance it uses, so tests pass their own."""

    def __init__(self, plan: Plan, connectors: dict[str, Connector], execs: ExecRunner | None = None,
                 clock: Callable[[], float] = time.time, sleep: Callable[[float], None] = time.sleep,
                 observe: StageObserver | None = None, dedupe: bool = True,
                 rand: Callable[[], float] = random.random, retry_limits: RetryLimits = DEFAULT_LIMITS) -> None:
        self.plan = plan
        self.connectors = connectors
        self.execs = execs or ExecRunner()
        self.clock = clock
        self.sleep = sleep
        self.rand = rand
        self.retry_limits = retry_limits
        self.observe = observe
        self.dedupe = dedupe
        self.tickers: Any = None

    @classmethod
    def build(cls, plan: Plan, registry: Registry, execs: ExecRunner | None = None, **kw: Any) -> Runtime:
        runtime = cls(plan, registry.build_all(plan.ir), execs, **kw)
        freeze_init_heap()
        return runtime

    def process(self, records: Sequence[Record], budget: RetryBudget | None = None) -> list[Outcome]:
        """Run a batch. Records whose payload is ``Unreadable`` fail with its message without running.

        ``budget``: the time its retries may sleep, together; pass one to share it between the parts of
        one invocation (an object read in chunks, a FIFO batch run record by record).
        """
        readable = records
        for r in records:
            if type(r.payload) is Unreadable:
                readable = [r for r in records if type(r.payload) is not Unreadable]
                break
        perform = functools.partial(self.perform, budget=budget or self.retry_budget())  # no Python frame of its own

        with _collector_paused:
            outcomes = self.plan.run(readable, int(self.clock() * 1000), perform, self.observe, self.dedupe)
        if readable is records:
            return outcomes
        done = iter(outcomes)
        return [Outcome(r, errors=[RecordError(r.id, None, None, r.payload.message)])
                if isinstance(r.payload, Unreadable) else next(done) for r in records]

    def dead_letter_target(self, name: str | None) -> str | None:
        """``name`` (``AGGLO_DEAD_LETTER``) checked at cold start: a typo would otherwise loop every poison record."""
        if name and name not in self.connectors:
            raise ValueError(f"AGGLO_DEAD_LETTER names '{name}', which is not an external system of the config "
                             f"(it has: {', '.join(sorted(self.connectors)) or 'none'})")
        return name or None

    def retry_budget(self) -> RetryBudget:
        return RetryBudget(self.retry_limits)

    def settle(self, outcomes: Sequence[Outcome], policy: SettlementPolicy,
               deliveries: Sequence[int] | None = None) -> list[Verdict]:
        """Each record's verdict under ``policy``, with the dead-letter writes it calls for done.

        A record whose dead-letter write failed is ``RETRY``: the platform delivers it again.
        """
        for o in outcomes:
            if o.errors:
                break
        else:  # nothing failed (nearly every call): nothing to write, log or look up per record
            return [Verdict.DONE] * len(outcomes)
        verdicts = policy.verdicts(outcomes, deliveries)
        letters = [o for o, v in zip(outcomes, verdicts, strict=True) if v is Verdict.DEAD_LETTER]
        if letters and policy.dead_letter:
            undelivered = {id(o) for o in self.dead_letter(policy.dead_letter, letters)}
            if undelivered:
                log.warning("%d failed record(s) could not be written to the dead-letter system '%s'; they will "
                            "be delivered again", len(undelivered), policy.dead_letter)
                verdicts = [Verdict.RETRY if id(o) in undelivered else v
                            for o, v in zip(outcomes, verdicts, strict=True)]
        dropped = [o.record.id for o, v in zip(outcomes, verdicts, strict=True) if v is Verdict.DROP]
        if dropped:
            log.error("%d failed record(s) acknowledged with nowhere to go (set AGGLO_DEAD_LETTER to keep them): %s",
                      len(dropped), ", ".join(dropped[:10]))
        return verdicts

    def dead_letter(self, target: str, failed: Sequence[Outcome]) -> list[Outcome]:
        """Write failed records, with their errors, to the external system ``target``.

        Returns the outcomes that could not be written there either (the caller must
        then let the platform retry). Keys are deterministic, so a retry overwrites.
        """
        if not failed:
            return []
        effects: list[Effect] = [Put(target, _DEAD_LETTER_IDS(o.record.id), {
            "record": o.record.id, "source": o.record.source,
            "event": None if isinstance(o.record.payload, Unreadable) else o.record.payload,
            "errors": [e.to_dict() for e in o.errors]}) for o in failed]
        results = self.perform(effects)
        return [o for o, r in zip(failed, results, strict=True) if isinstance(r, EffectFailed)]

    def perform(self, effects: list[Effect], budget: RetryBudget | None = None) -> list[Any]:
        """Perform a batch of effects, grouped per connector so each backend sees one call per crossing.

        ``budget`` is the batch's time left for retries (a fresh one when not given).
        """
        budget = budget or self.retry_budget()
        if not effects:
            return []
        first = _target(effects[0])
        if len(effects) == 1:  # a batch of one's crossing
            return self._perform_one(first, effects, budget)
        for e in effects:
            if _target(e) != first:
                break
        else:  # the common case: one stage's effects to one system
            return self._perform_one(first, effects, budget)
        results: list[Any] = [None] * len(effects)
        groups: dict[str | None, list[int]] = {}
        for i, e in enumerate(effects):
            groups.setdefault(_target(e), []).append(i)
        for target, idxs in groups.items():
            out = self._perform_one(target, [effects[i] for i in idxs], budget)
            for i, r in zip(idxs, out, strict=True):
                results[i] = r
        return results

    def _perform_one(self, target: str | None, effects: list[Effect], budget: RetryBudget) -> list[Any]:
        connector: Any = self.execs if target is None else self.connectors.get(target)
        if connector is None and target == _TICKERS:
            from handlers.connectors.ticker import TickerClient

            connector = self.tickers = self.tickers or TickerClient()
        if connector is None:
            return [EffectFailed(f"no connector for external system '{target}'")] * len(effects)
        out = self._attempt(connector, effects)
        for r in out:
            if type(r) is EffectFailed:
                return self._with_retries(connector, effects, out, budget)
        return out  # everything done at the first attempt: the path nearly every call takes

    @staticmethod
    def _attempt(connector: Any, effects: list[Effect]) -> list[Any]:
        """One call to the connector: one result per effect, whatever it raises."""
        try:
            out = connector.perform(effects)
        except Exception as err:  # a connector failure fails its effects, never the batch
            log.warning("connector %s failed: %s", type(connector).__name__, err)
            out = [EffectFailed(f"{type(err).__name__}: {err}")] * len(effects)
        if len(out) != len(effects):
            raise RuntimeError(f"{type(connector).__name__} answered {len(out)} results for {len(effects)} effects")
        return out

    def _with_retries(self, connector: Any, effects: list[Effect], first: list[Any],
                      budget: RetryBudget) -> list[Any]:
        """Transient failures again (``first``: the first attempt's results), as the effect's retry strategy
        allows, within the batch's budget.

        A permanent failure is never retried: the record's data is at fault and would fail again.
        """
        results: list[Any] = list(first)
        retry = [i for i, r in enumerate(first)
                 if isinstance(r, EffectFailed) and r.transient and effects[i].retry.num_retries > 0]
        attempt = 0
        while retry:
            asked = [results[i].retry_after_ms for i in retry if results[i].retry_after_ms is not None]
            wait = backoff_s(attempt, max(effects[i].retry.initial_backoff_ms for i in retry),
                             max(asked) if asked else None, self.retry_limits, self.rand)
            if not budget.take(wait):
                log.warning("the batch's retry budget (%gs) is spent: %d effect(s) stay failed",
                            self.retry_limits.budget_s, len(retry))
                return results
            self.sleep(wait)
            attempt += 1
            out = self._attempt(connector, [effects[i] for i in retry])
            pending, retry = retry, []
            for i, r in zip(pending, out, strict=True):
                results[i] = r
                if isinstance(r, EffectFailed) and r.transient and attempt < effects[i].retry.num_retries:
                    retry.append(i)
        return results
