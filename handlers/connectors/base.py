"""The base every connector builds on: it performs the core's effects through a few small hooks.

``perform(effects)`` answers one result per effect, in order. The base refuses an
effect the connector cannot perform (a permanent ``EffectFailed`` naming it),
serialises every body to JSON once (a body that cannot be serialised fails its
own effect, permanently, never its batch; a connector that ``keeps_values`` skips
the bodies the core marks ``checked``), hands the rest to ``perform_batch``
and turns what a hook raises into an ``EffectFailed`` classified by
``is_transient``. The default ``perform_batch`` runs the effects of one key in
order and different keys in parallel on a worker pool that lives as long as the
connector. A connector overrides only the hooks for the effects it performs
(``put``, ``apply_deltas``, ``join_add``, ``get_items``, ``compare_and_put``,
``ticker_call``), and ``perform_batch`` where its backend takes a batch at once.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, ClassVar, TypeVar

import orjson

from agglo_core.connstr import redact_text
from agglo_core.effects import (
    ApplyDeltas,
    CompareAndPut,
    DeltasApplied,
    EffectFailed,
    GetItems,
    JoinAdd,
    JoinState,
    Put,
    TickerCall,
)
from handlers.runtime.settlement import RetryLimits
from handlers.runtime.settlement import backoff_s as retry_backoff_s

log = logging.getLogger("agglo.connectors")

T = TypeVar("T")

OPTIMISTIC_ATTEMPTS = 50
"""How many times an optimistic write (read, decide, write if unchanged) is tried before giving up."""
BACKOFF_BASE_S = 0.005
BACKOFF_CAP_S = 0.2


class Refused(ValueError):
    """The backend refuses the record's own data (a key or body it cannot take): retrying cannot help."""


class Contended(RuntimeError):
    """An optimistic write lost to other writers every time it was tried; a later retry may win."""


class Conflict(Exception):
    """Raised inside ``optimistic`` by an attempt that lost to another writer: read again and retry."""


_CONTENDED = RetryLimits(max_sleep_s=BACKOFF_CAP_S)


def backoff_s(attempt: int) -> float:
    """Between optimistic attempts: the runtime's full jitter, on a short scale, so contending writers spread out."""
    return retry_backoff_s(attempt, int(BACKOFF_BASE_S * 1000), None, _CONTENDED, random.random)


def optimistic(attempt: Callable[[], T], what: str, attempts: int = OPTIMISTIC_ATTEMPTS,
               sleep: Callable[[float], None] = time.sleep) -> T:
    """``attempt()`` until it does not raise ``Conflict``, at most ``attempts`` times, with jittered backoff."""
    for n in range(attempts):
        try:
            return attempt()
        except Conflict:
            if n + 1 < attempts:
                sleep(backoff_s(n))
    raise Contended(f"{what}: still contended after {attempts} attempts (other writers won each time); "
                    "retry later")


OPERATOR_STATUSES = frozenset({401, 403, 404})
"""A client library's errors that no record causes: a bucket, topic or database that does not exist, a denied
permission. The operator fixes them, so they are transient and the records kept, as for AWS (a missing table)."""


def status_is_permanent(status: int) -> bool:
    """An HTTP status that refuses the request itself: a 4xx other than 408 (timeout) and 429 (throttled)."""
    return 400 <= status < 500 and status not in (408, 429)


@dataclass(slots=True)  # not frozen: a frozen dataclass's __init__ costs twice as much, once per effect
class Work:
    """An effect the connector will perform, with its JSON (a ``Put``'s body, a ``CompareAndPut``'s values)."""

    effect: Any
    data: Any = None


def encode(effect: Any) -> Any:
    """The one place bodies become JSON; raises ``orjson.JSONEncodeError`` (a ``TypeError``) when one cannot."""
    kind = type(effect)
    if kind is Put:
        return orjson.dumps(effect.body)
    if kind is CompareAndPut:
        return tuple(orjson.dumps(value) for _, value in effect.writes)
    return None


class BaseConnector:
    """A connector's base; see the module's docstring."""

    capabilities: ClassVar[frozenset[str]] = frozenset()
    """The effects (class names) this connector performs."""
    concurrency: int = 1
    """Worker threads for effects on different keys (1: everything in the calling thread)."""
    keeps_values: ClassVar[bool] = False
    """The connector keeps bodies as values, not JSON: a ``Put`` whose body is ``checked`` is not serialised."""

    _pool: ThreadPoolExecutor | None = None
    _pool_lock = threading.Lock()

    # --- what the runtime calls ----------------------------------------------------------------

    def perform(self, effects: list[Any]) -> list[Any]:
        if len(effects) == 1:  # a call of one record's crossing: no positions to keep
            work = self._work(effects[0])
            if type(work) is EffectFailed:
                return [work]
            try:
                answers = self.perform_batch([work])  # type: ignore[list-item]
            except Exception as err:
                return [self.failure(err)]
            if len(answers) != 1:
                raise RuntimeError(f"{self.describe()} answered {len(answers)} results for 1 effect")
            return answers
        works: list[Work] = []
        refused: dict[int, EffectFailed] = {}  # by position: effects this connector will not perform
        make = self._work
        for i, e in enumerate(effects):
            work = make(e)
            if type(work) is EffectFailed:
                refused[i] = work
            else:
                works.append(work)  # type: ignore[arg-type]
        if works:
            try:
                answers = self.perform_batch(works)
            except Exception as err:  # the whole call failed: every effect it carried
                answers = [self.failure(err)] * len(works)
            if len(answers) != len(works):
                raise RuntimeError(f"{self.describe()} answered {len(answers)} results for {len(works)} effects")
        else:
            answers = []
        if not refused:
            return answers
        done = iter(answers)
        return [refused[i] if i in refused else next(done) for i in range(len(effects))]

    def _work(self, e: Any) -> Work | EffectFailed:
        """The effect with its JSON, or why this connector will not perform it (permanent)."""
        kind = type(e)
        try:
            if kind is Put and "Put" in self.capabilities:  # most effects: the body inline, no call to encode
                # Serialised only to be refused if it cannot be JSON, unless it is known it can.
                return Work(e, None if self.keeps_values and e.checked else orjson.dumps(e.body))
            if kind.__name__ not in self.capabilities:
                return EffectFailed(f"{self.describe()} cannot perform {kind.__name__}", transient=False)
            return Work(e, encode(e))
        except TypeError as err:  # orjson.JSONEncodeError is one
            return EffectFailed(f"{self.describe()}: the body cannot be stored as JSON: {err}", transient=False)

    def get(self, key: str) -> Any:
        """The value stored at ``key`` (None when there is none), for tools and tests."""
        raise NotImplementedError(f"{self.describe()} cannot read back what it was sent")

    def scan(self, prefix: str = "") -> Iterator[tuple[str, Any]]:
        """Every (key, value) whose key starts with ``prefix``, for tools and tests."""
        raise NotImplementedError(f"{self.describe()} cannot list what it was sent")

    def close(self) -> None:
        """Stop the worker pool (a connector lives as long as its process; tests close theirs)."""
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True)

    # --- hooks ---------------------------------------------------------------------------------

    def perform_batch(self, works: list[Work]) -> list[Any]:
        """Every effect, one at a time: one key's in order, different keys in parallel on the pool.

        Override where the backend takes a whole batch at once (a pipeline, a batch API, a
        transaction); an exception then fails every effect of the batch.
        """
        by_key: dict[Any, list[int]] = {}
        for i, w in enumerate(works):
            by_key.setdefault(getattr(w.effect, "key", None), []).append(i)  # a GetItems: one group
        results: list[Any] = [None] * len(works)

        def run_key(indexes: list[int]) -> None:
            for i in indexes:
                results[i] = self.perform_one(works[i])

        if len(by_key) <= 1 or self.concurrency <= 1:
            for indexes in by_key.values():
                run_key(indexes)
        else:
            list(self.pool().map(run_key, by_key.values()))
        return results

    def perform_one(self, work: Work) -> Any:
        """One effect through its hook; what the hook raises fails this effect alone."""
        try:
            return self.dispatch(work)
        except Exception as err:
            return self.failure(err)

    def dispatch(self, work: Work) -> Any:
        """The hook for the effect's type (exceptions propagate)."""
        e = work.effect
        kind = type(e)
        if kind is Put:
            return self.put(e, work.data)
        if kind is ApplyDeltas:
            return self.apply_deltas(e)
        if kind is JoinAdd:
            return self.join_add(e)
        if kind is GetItems:
            return self.get_items(e)
        if kind is CompareAndPut:
            return self.compare_and_put(e, work.data)
        if kind is TickerCall:
            return self.ticker_call(e)
        raise TypeError(f"{self.describe()} cannot perform {kind.__name__}")

    def put(self, e: Put, body: bytes) -> Any:
        raise NotImplementedError

    def apply_deltas(self, e: ApplyDeltas) -> DeltasApplied:
        raise NotImplementedError

    def join_add(self, e: JoinAdd) -> JoinState:
        raise NotImplementedError

    def get_items(self, e: GetItems) -> tuple:
        raise NotImplementedError

    def compare_and_put(self, e: CompareAndPut, values: tuple[bytes, ...]) -> bool:
        raise NotImplementedError

    def ticker_call(self, e: TickerCall) -> Any:
        raise NotImplementedError

    def is_transient(self, err: Exception) -> bool:
        """Whether a failure is the outside system's (retrying may help) rather than the record's own data."""
        if isinstance(err, Refused | ArithmeticError):  # ArithmeticError: a sum past the bounds state keeps
            return False
        status = getattr(err, "code", None)  # google.api_core's exceptions carry the HTTP status
        return not (isinstance(status, int) and status_is_permanent(status) and status not in OPERATOR_STATUSES)

    def describe(self) -> str:
        """How messages name this connector."""
        return type(self).__name__

    # --- for subclasses ------------------------------------------------------------------------

    def failure(self, err: Exception) -> EffectFailed:
        transient = self.is_transient(err)
        reason = redact_text(str(err))  # a library's message may quote a URL with its credentials
        log.warning("%s failed (%s): %s: %s", self.describe(), "transient" if transient else "permanent",
                    type(err).__name__, reason)
        return EffectFailed(f"{type(err).__name__}: {reason}", transient=transient)

    def pool(self) -> ThreadPoolExecutor:
        """The connector's worker pool, started on first use and kept."""
        if self._pool is None:
            with self._pool_lock:
                if self._pool is None:
                    self._pool = ThreadPoolExecutor(max_workers=self.concurrency,
                                                    thread_name_prefix=type(self).__name__)
        return self._pool
