"""Effects: what the core asks the outside world to do, as small immutable values.

The core yields a list of effects and is sent back one result per effect, in
order. A result is the effect's answer, or an ``EffectFailed`` when the effect
could not be performed (after the runtime's retries); the core then fails the
record(s) that needed it.
"""

from __future__ import annotations

from dataclasses import field
from typing import Any, Literal

from agglo_core.records import value_class

DeltaOp = Literal["add", "max", "min"]
Deltas = dict[str, tuple[DeltaOp, Any]]
"""field -> (op, amount). A state item is a flat map of field -> number."""


@value_class
class RetryPolicy:
    """How often the runtime retries an effect that failed transiently (a process's binge retryStrategy)."""

    num_retries: int = 0
    initial_backoff_ms: int = 0


NO_RETRY = RetryPolicy()


@value_class
class ApplyDeltas:
    """Atomically apply ``deltas`` to the item at ``key``; the result is ``DeltasApplied``.

    Deltas commute, so a backend can apply them in one round trip (DynamoDB
    ``UpdateItem`` ADD / conditional SET, one Redis script, one SQLite
    transaction). Returning the item as it was before lets the core compute the
    exact state after each record of the batch.

    ``marks`` makes it exactly-once per record: each part is one record's own
    deltas under its dedupe mark. In the same atomic step the store skips the
    parts whose mark it has seen (within the marks' time to live), applies the
    others in order (``deltas`` is their sum when none is skipped) and remembers
    their marks, each with the fields its part wrote as they were right after it.
    """

    store: str
    key: str
    deltas: Deltas
    retry: RetryPolicy = NO_RETRY
    marks: tuple[tuple[str, Deltas], ...] = ()


@value_class
class DeltasApplied:
    """The answer to ``ApplyDeltas``: the item before, and the marks skipped as already applied.

    ``remembered`` holds, for each skipped mark the store still knows the outcome
    of, the fields its part wrote as they were right after that earlier delivery,
    so a redelivered record shows what its first delivery showed.
    """

    before: dict
    duplicates: frozenset[str] = frozenset()
    remembered: dict[str, dict] = field(default_factory=dict, compare=False, hash=False)


JOIN_PREFIX = "join/"
"""Every ``JoinAdd`` key starts with this, so a store can tell its joins from other items (to forget old ones)."""
DEFAULT_JOIN_TTL_S = 7 * 24 * 3600
"""How long a store keeps a join without a deadline after its last add, unless its ``joinTtl`` says otherwise
(the same as the dedupe marks' default)."""


@value_class
class JoinAdd:
    """Atomically add ``member`` to the join set at ``key`` and close the join if this add decides it.

    A new join gets ``deadline_ms``. In the same atomic step the store closes (removes)
    the join when ``now_ms`` is past its deadline ("timedout") or when the members now
    include every one of ``required`` ("complete"), so exactly one add closes a join,
    however many instances add at once. The result is the ``JoinState`` after the add.

    ``deadline_ms`` None: the join has no deadline (binge's ``timeoutMs`` <= 0) and closes
    only when complete. Stores keep "no deadline" as the absence of one (JSON null, or
    no deadline attribute or field), never as a number, and forget such a join once
    their ``joinTtl`` has passed since its last add: the next add starts a new join.

    With a ``mark`` (the record's dedupe mark) the store remembers that result for the
    marks' time to live and answers a redelivery of the record with it, changing nothing.
    """

    store: str
    key: str
    member: str
    deadline_ms: int | None
    retry: RetryPolicy = NO_RETRY
    required: tuple[str, ...] = ()
    now_ms: int = 0
    mark: str = ""


@value_class
class JoinState:
    """``closed``: "" (the join stays open), "complete" or "timedout" (this add closed it).

    ``deadline_ms`` is the join's deadline, None when it has none."""

    members: frozenset[str]
    deadline_ms: int | None
    closed: str = ""


@value_class
class Put:
    """Write ``body`` under ``key`` to the output ``target`` (an external system's name).

    The key is deterministic, so a redelivered record overwrites the same object.
    The result is the target's response (an HTTP JSON body) or None.
    """

    target: str
    key: str
    body: dict
    retry: RetryPolicy = NO_RETRY
    checked: bool = False
    """The body is known to be writable as JSON (made by the core from checked values): a store that keeps
    values rather than their JSON need not serialise it to find out."""


@value_class
class Exec:
    """Run an executable with ``input`` as JSON on stdin, after ``delay_ms`` (none when not positive).

    With ``wait`` the result is its stdout parsed as JSON; without, the effect is
    fire-and-forget and its result is ignored.
    """

    path: str
    args: tuple[str, ...]
    input: Any
    delay_ms: int = 0
    wait: bool = True
    retry: RetryPolicy = NO_RETRY
    lane: str = ""
    """Waited-for execs of one crossing with the same non-empty lane run one after another, in the order
    given (one spawner stage's: its side effects happen in input order); those without run side by side."""


@value_class
class GetItems:
    """Read the values at ``keys`` of a key-value store; the result is a tuple (None where missing)."""

    store: str
    keys: tuple[str, ...]
    retry: RetryPolicy = NO_RETRY


@value_class
class CompareAndPut:
    """Atomically write ``writes`` only if the item at ``key`` has ``uuid`` ``expected`` (None: absent)
    and none of the ``absent`` keys exists; the result says whether it wrote.

    This is how a substream's head moves: a new message's previous id must still
    be the head, so concurrent writers never fork the chain and the loser re-reads.
    """

    store: str
    key: str
    expected: str | None
    writes: tuple[tuple[str, dict], ...]
    absent: tuple[str, ...] = ()
    retry: RetryPolicy = NO_RETRY


@value_class
class TickerCall:
    """An HTTP call to an entwine ticker at ``endpoint`` (binge's ``host:port`` or a URL).

    The result is the ticker's JSON answer; a failure is an ``EffectFailed`` whose
    ``details`` hold the HTTP ``status`` (409: the ticker's view moved on).
    """

    endpoint: str
    method: str
    path: str
    body: dict | None = None
    retry: RetryPolicy = NO_RETRY


@value_class
class EffectFailed:
    """The result of an effect that could not be performed, classified by whoever saw it fail.

    ``transient``: an outside system failed and retrying may help (a timeout, a throttle, a 503).
    Otherwise the record's own data is at fault (a body the system refuses, an executable that
    rejects its input): retrying cannot help, and the record is settled at once.

    ``retry_after_ms``: how long the outside system asked to be left alone (a ``Retry-After``,
    a throttle's hint); the runtime waits at least that long before retrying, within its cap.
    """

    message: str
    details: dict = field(default_factory=dict)
    transient: bool = True
    retry_after_ms: int | None = None

    def __str__(self) -> str:
        return self.message


Effect = ApplyDeltas | JoinAdd | Put | Exec | GetItems | CompareAndPut | TickerCall
