"""How a record that ran is settled: one policy for every adapter, and the runtime's bounded retries.

A record is settled once, after the runtime's own retries of its effects:

* ``DONE``: it went through.
* ``RETRY``: an outside system failed (a ``transient`` error): let the platform
  deliver it again.
* ``DEAD_LETTER``: its own data is at fault (every error permanent) and a
  dead-letter system is configured: it is written there with its errors and
  acknowledged. If that write fails too, it becomes ``RETRY``.
* ``REPORT``: permanent, and the trigger has its own place for failed records
  (an SQS redrive policy, a stream's on-failure destination, an asynchronous
  invocation's on-failure destination, the durable queue's ``failed`` table, the
  HTTP caller): it is reported failed and that place takes it.
* ``DROP``: permanent, with nowhere to go: logged at ERROR and acknowledged, so
  a poison record never blocks a shard or a subscription.

``POISON_WITHOUT_DEAD_LETTER`` is the table the README's "Failure settlement"
section shows; adapters only translate verdicts into their platform's words.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import StrEnum

from agglo_core import Outcome


class Verdict(StrEnum):
    DONE = "done"
    RETRY = "retry"
    DEAD_LETTER = "dead_letter"
    REPORT = "report"
    DROP = "drop"


class Trigger(StrEnum):
    SQS = "sqs"
    KINESIS = "kinesis"
    DYNAMODB = "dynamodb"
    S3 = "s3"
    SNS = "sns"
    PUBSUB = "pubsub"
    GCS = "gcs"
    QUEUE = "queue"
    HTTP = "http"
    DIRECT = "direct"


STREAMS = frozenset({Trigger.KINESIS, Trigger.DYNAMODB})

SYNCHRONOUS = frozenset({Trigger.HTTP, Trigger.DIRECT, Trigger.QUEUE})
"""The caller (or the queue's ``failed`` table) takes a failed record: the dead-letter system is not used."""

POISON_WITHOUT_DEAD_LETTER: dict[Trigger, Verdict] = {
    Trigger.SQS: Verdict.REPORT,  # the queue's redrive policy moves it to its DLQ after maxReceiveCount
    Trigger.KINESIS: Verdict.DROP,  # REPORT when the mapping has an on-failure destination (see below)
    Trigger.DYNAMODB: Verdict.DROP,
    Trigger.S3: Verdict.REPORT,  # the invocation fails: Lambda's retries, then its on-failure destination
    Trigger.SNS: Verdict.REPORT,
    Trigger.PUBSUB: Verdict.DROP,  # acknowledged: nacking poison would only loop
    Trigger.GCS: Verdict.DROP,
    Trigger.QUEUE: Verdict.REPORT,  # the queue's failed table
    Trigger.HTTP: Verdict.REPORT,  # 422
    Trigger.DIRECT: Verdict.REPORT,  # listed in the answer
}


@dataclass(frozen=True, slots=True)
class SettlementPolicy:
    """The verdict for each record of one trigger's batch.

    ``dead_letter``: the external system failed records go to (``AGGLO_DEAD_LETTER``).
    ``failure_destination``: for Kinesis and DynamoDB Streams, the event source mapping
    has an on-failure destination and a bounded ``MaximumRetryAttempts``, so reporting
    a poison record holds the shard only for those retries before it moves on.
    ``max_deliveries``: a transient failure on its last delivery is settled as permanent
    (the durable queue's own redrive; platforms count deliveries themselves).
    """

    trigger: Trigger
    dead_letter: str | None = None
    failure_destination: bool = False
    max_deliveries: int | None = None

    def verdict(self, outcome: Outcome, delivery: int = 1) -> Verdict:
        if not outcome.errors:
            return Verdict.DONE
        last = self.max_deliveries is not None and delivery >= self.max_deliveries
        if any(e.transient for e in outcome.errors) and not last:
            return Verdict.RETRY
        if self.dead_letter and self.trigger not in SYNCHRONOUS:
            return Verdict.DEAD_LETTER
        if self.trigger in STREAMS and self.failure_destination:
            return Verdict.REPORT
        return POISON_WITHOUT_DEAD_LETTER[self.trigger]

    def verdicts(self, outcomes: Sequence[Outcome], deliveries: Sequence[int] | None = None) -> list[Verdict]:
        if deliveries is None:
            return [self.verdict(o) for o in outcomes]
        return [self.verdict(o, n) for o, n in zip(outcomes, deliveries, strict=True)]


FAILED = frozenset({Verdict.RETRY, Verdict.REPORT})
"""Verdicts the platform is told about as failed (``batchItemFailures``, a failed invocation, a nack)."""

RETRY_AFTER_S = 1
"""The ``Retry-After`` of a 503: when a caller may send a transiently failed request again."""


def http_status(verdicts: Sequence[Verdict]) -> int:
    """An HTTP answer for a request's records: 503 if any may succeed later, else 422 if any is poison."""
    if Verdict.RETRY in verdicts:
        return 503
    return 422 if Verdict.REPORT in verdicts else 200


# --- the runtime's own retries ---------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class RetryLimits:
    """Caps on the runtime's retries, whatever a config's ``retryStrategy`` asks.

    ``max_sleep_s`` caps one sleep (a connector's ``retry_after_ms`` included);
    ``budget_s`` caps the sleeps of one batch together, so no invocation spends
    minutes asleep: past it, failed effects stay failed and the platform redelivers.
    """

    max_sleep_s: float = 2.0
    budget_s: float = 10.0


DEFAULT_LIMITS = RetryLimits()


def backoff_s(attempt: int, initial_backoff_ms: int, retry_after_ms: int | None, limits: RetryLimits,
              rand: Callable[[], float]) -> float:
    """The sleep before retry ``attempt`` (0 for the first): full jitter over a capped exponential.

    A ``retry_after_ms`` from whoever saw the failure is a floor, within the cap.
    """
    ceiling = min(limits.max_sleep_s, initial_backoff_ms / 1000 * 2 ** min(attempt, 32))
    sleep = rand() * ceiling
    if retry_after_ms is not None:
        sleep = max(sleep, retry_after_ms / 1000)
    return min(sleep, limits.max_sleep_s)


class RetryBudget:
    """What is left of one batch's sleeping time; shared by every effect crossing of the batch."""

    def __init__(self, limits: RetryLimits) -> None:
        self.left_s = limits.budget_s

    def take(self, seconds: float) -> bool:
        """Spend ``seconds`` if that much is left."""
        if seconds > self.left_s:
            return False
        self.left_s -= seconds
        return True
