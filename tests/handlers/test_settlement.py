"""The settlement policy (pure), the runtime's bounded retries, exec failure classes, the ticker's bounded loops."""

from __future__ import annotations

import os
import stat

import pytest
from builders import config, external
from hypothesis import given
from hypothesis import strategies as st

from agglo_core import EffectFailed, Exec, Outcome, Record, RecordError, compile_plan
from agglo_core.entwine.ticker import TickerError
from handlers.connectors import default_registry
from handlers.runtime.driver import Runtime
from handlers.runtime.execs import ExecRunner
from handlers.runtime.settlement import (
    DEFAULT_LIMITS,
    FAILED,
    POISON_WITHOUT_DEAD_LETTER,
    STREAMS,
    SYNCHRONOUS,
    RetryBudget,
    RetryLimits,
    SettlementPolicy,
    Trigger,
    Verdict,
    backoff_s,
    http_status,
)

# --- the policy ------------------------------------------------------------------------------------


def outcome(*transient: bool) -> Outcome:
    """A record's outcome with one error per flag (none: it went through)."""
    return Outcome(Record("r", {}), errors=[RecordError("r", "P", "X", "failed", t) for t in transient])


policies = st.builds(SettlementPolicy, st.sampled_from(list(Trigger)), st.sampled_from([None, "DeadLetters"]),
                     st.booleans(), st.sampled_from([None, 1, 3]))


@given(policies, st.lists(st.booleans(), max_size=4), st.integers(1, 5))
def test_every_record_gets_the_verdict_of_the_table(policy, errors, delivery):
    verdict = policy.verdict(outcome(*errors), delivery)
    last = policy.max_deliveries is not None and delivery >= policy.max_deliveries
    if not errors:
        assert verdict is Verdict.DONE
    elif any(errors) and not last:
        assert verdict is Verdict.RETRY  # an outside system failed: the platform delivers it again
    elif policy.dead_letter and policy.trigger not in SYNCHRONOUS:
        assert verdict is Verdict.DEAD_LETTER
    elif policy.trigger in STREAMS:
        assert verdict is (Verdict.REPORT if policy.failure_destination else Verdict.DROP)
    else:
        assert verdict is POISON_WITHOUT_DEAD_LETTER[policy.trigger]


@given(policies, st.lists(st.booleans(), min_size=1, max_size=4))
def test_a_poison_record_never_holds_a_stream_without_a_bounded_failure_destination(policy, errors):
    verdict = policy.verdict(outcome(*[False] * len(errors)))
    if policy.trigger in STREAMS and not policy.failure_destination:
        assert verdict not in FAILED  # acknowledged: the shard moves on
    if policy.trigger in (Trigger.PUBSUB, Trigger.GCS):
        assert verdict in (Verdict.DEAD_LETTER, Verdict.DROP)  # never nacked: a subscription never loops on it


def test_the_table_names_every_trigger():
    assert set(POISON_WITHOUT_DEAD_LETTER) == set(Trigger)
    assert POISON_WITHOUT_DEAD_LETTER[Trigger.SQS] is Verdict.REPORT  # the queue's redrive policy takes it
    assert POISON_WITHOUT_DEAD_LETTER[Trigger.PUBSUB] is Verdict.DROP


def test_a_transient_failure_on_its_last_delivery_is_settled_as_permanent():
    queue = SettlementPolicy(Trigger.QUEUE, max_deliveries=3)
    assert [queue.verdict(outcome(True), n) for n in (1, 2, 3, 4)] == [Verdict.RETRY, Verdict.RETRY,
                                                                      Verdict.REPORT, Verdict.REPORT]


@given(st.lists(st.sampled_from([Verdict.DONE, Verdict.RETRY, Verdict.REPORT]), min_size=1, max_size=5))
def test_an_http_answer_says_whether_sending_again_can_help(verdicts):
    status = http_status(verdicts)
    assert status == (503 if Verdict.RETRY in verdicts else 422 if Verdict.REPORT in verdicts else 200)


# --- backoff and the batch's budget ----------------------------------------------------------------

@given(st.integers(0, 200), st.integers(0, 10**9), st.one_of(st.none(), st.integers(0, 10**9)),
       st.floats(0, 1, exclude_max=True), st.floats(0.01, 30), st.floats(0, 300))
def test_every_sleep_is_within_its_cap(attempt, initial_ms, retry_after_ms, draw, cap, budget):
    limits = RetryLimits(max_sleep_s=cap, budget_s=budget)
    sleep = backoff_s(attempt, initial_ms, retry_after_ms, limits, lambda: draw)
    assert 0 <= sleep <= cap
    assert sleep <= max(initial_ms / 1000 * 2 ** min(attempt, 32), (retry_after_ms or 0) / 1000)
    if retry_after_ms is not None:
        assert sleep >= min(cap, retry_after_ms / 1000)  # a system's "retry after" is honoured within the cap


def test_full_jitter_spreads_over_zero_to_the_exponential():
    limits = RetryLimits(max_sleep_s=5)
    assert [backoff_s(a, 100, None, limits, lambda: 1.0) for a in range(8)] == [0.1, 0.2, 0.4, 0.8, 1.6, 3.2, 5, 5]
    assert backoff_s(3, 100, None, limits, lambda: 0.25) == pytest.approx(0.2)
    assert backoff_s(3, 100, None, limits, lambda: 0.0) == 0


def test_the_budget_is_spent_once():
    budget = RetryBudget(RetryLimits(budget_s=1.0))
    assert budget.take(0.6) and not budget.take(0.6) and budget.take(0.4) and not budget.take(0.01)


class Scripted:
    """A connector that answers each effect from ``answers`` (a function of the call number)."""

    def __init__(self, answer) -> None:
        self.answer, self.calls = answer, []

    def perform(self, effects):
        self.calls.append(len(effects))
        return [self.answer(len(self.calls)) for _ in effects]


def runtime_with(answer, retries: int, backoff_ms: int, limits: RetryLimits = DEFAULT_LIMITS, tmp_path=None):
    cfg = config({"tee": {"name": "Out", "outputConnectorRef": "Out"}},
                 externals=(external("ExternalLocalFile", "Out", str(tmp_path)),), retries=retries)
    cfg["pipelines"][0]["processes"][0]["retryStrategy"]["initialBackOffMs"] = backoff_ms
    sleeps: list[float] = []
    runtime = Runtime.build(compile_plan(cfg), default_registry(), sleep=sleeps.append, clock=lambda: 1.7e9,
                            rand=lambda: 1.0, retry_limits=limits)
    connector = runtime.connectors["Out"] = Scripted(answer)
    return runtime, connector, sleeps


def test_a_config_asking_for_minutes_of_backoff_sleeps_within_the_caps(tmp_path):
    """retryStrategy 30 retries from 1 s (binge would sleep 2^30 s): each sleep capped, the batch's total too."""
    limits = RetryLimits(max_sleep_s=2, budget_s=7)
    runtime, connector, sleeps = runtime_with(lambda n: EffectFailed("503"), 30, 1000, limits, tmp_path)
    outcomes = runtime.process([Record("r1", {"a": 1}), Record("r2", {"a": 2})])
    assert sleeps == [1.0, 2.0, 2.0, 2.0] and sum(sleeps) <= limits.budget_s
    assert len(connector.calls) == 5
    assert all(e.transient for o in outcomes for e in o.errors)  # the platform delivers them again


def test_permanent_failures_are_never_retried(tmp_path):
    runtime, connector, sleeps = runtime_with(lambda n: EffectFailed("refused", transient=False), 5, 10,
                                              tmp_path=tmp_path)
    [result] = runtime.process([Record("r1", {"a": 1})])
    assert connector.calls == [1] and sleeps == []
    [error] = result.errors
    assert not error.transient


def test_retry_after_is_honoured_within_the_cap(tmp_path):
    limits = RetryLimits(max_sleep_s=1.5, budget_s=60)
    answers = {1: EffectFailed("slow down", retry_after_ms=700), 2: EffectFailed("slow down", retry_after_ms=90_000)}
    runtime, connector, sleeps = runtime_with(lambda n: answers.get(n), 3, 1, limits, tmp_path)
    [result] = runtime.process([Record("r1", {"a": 1})])
    assert result.errors == [] and sleeps == [0.7, 1.5]


def test_the_budget_is_per_batch_not_per_crossing(tmp_path):
    """Two batches each get the whole budget; within one batch, later crossings get what is left."""
    limits = RetryLimits(max_sleep_s=1, budget_s=2.5)
    runtime, connector, sleeps = runtime_with(lambda n: EffectFailed("down"), 10, 1000, limits, tmp_path)
    runtime.process([Record("r1", {"a": 1})])
    assert sleeps == [1, 1]
    runtime.process([Record("r2", {"a": 1})])
    assert sleeps == [1, 1, 1, 1]


def test_settle_dead_letters_poison_and_retries_what_the_dead_letter_system_refused(tmp_path):
    runtime, connector, _ = runtime_with(lambda n: None, 0, 1, tmp_path=tmp_path)
    letters = runtime.connectors["Letters"] = Scripted(lambda n: None if n == 1 else EffectFailed("letters down"))
    policy = SettlementPolicy(Trigger.SQS, dead_letter="Letters")
    batch = [outcome(), outcome(False), outcome(True)]
    assert runtime.settle(batch, policy) == [Verdict.DONE, Verdict.DEAD_LETTER, Verdict.RETRY]
    assert letters.calls == [1]
    assert runtime.settle(batch, policy) == [Verdict.DONE, Verdict.RETRY, Verdict.RETRY]  # the write failed


# --- exec failures ---------------------------------------------------------------------------------

def script(tmp_path, name: str, body: str) -> str:
    path = tmp_path / name
    path.write_text("#!/bin/sh\n" + body + "\n")
    path.chmod(path.stat().st_mode | stat.S_IEXEC)
    return str(path)


@pytest.mark.parametrize(("body", "transient", "says"), [
    ("sleep 5", True, "timed out"),
    ("echo broken >&2; exit 3", False, "exited with status 3"),
    ("echo 'not json'", False, "not JSON"),
])
def test_exec_failures_are_classified(tmp_path, body, transient, says):
    path = script(tmp_path, "x.sh", body)
    runner = ExecRunner(frozenset({os.path.realpath(path)}), timeout_s=0.5)
    [result] = runner.perform([Exec(path, (), {"a": 1})])
    assert isinstance(result, EffectFailed) and says in result.message
    assert result.transient is transient


def test_an_exec_that_cannot_start_is_transient_and_one_not_allowed_is_permanent(tmp_path):
    path = script(tmp_path, "x.sh", "echo '{}'")
    os.chmod(path, 0o600)  # not executable: the start fails (OSError), a deployment may fix it
    runner = ExecRunner(frozenset({os.path.realpath(path)}))
    [result] = runner.perform([Exec(path, (), {})])
    assert isinstance(result, EffectFailed) and "could not run" in result.message and result.transient
    [refused] = ExecRunner().perform([Exec(path, (), {})])
    assert isinstance(refused, EffectFailed) and "not allowed" in refused.message and not refused.transient


# --- the ticker's optimistic loops -----------------------------------------------------------------

def test_a_redis_ticker_state_that_stays_contended_refuses_with_503_after_its_cap(redis_kv_url):
    import redis

    from handlers.entwine.ticker_state import Contention, RedisTickerState

    sleeps: list[float] = []
    state = RedisTickerState(redis_kv_url, "t:", Contention(sleeps.append, lambda: 1.0, attempts=6))
    other = redis.Redis.from_url(redis_kv_url)
    runs = []

    def contended(tx):
        runs.append(tx.get("k"))
        other.incr("t:version")  # another instance commits between our read and our write, every time
        tx.put("k", len(runs))

    with pytest.raises(TickerError) as refused:
        state.run(contended)
    assert refused.value.status == 503 and "6 attempts" in str(refused.value)
    assert len(runs) == 6 and sleeps == [0.005, 0.01, 0.02, 0.04, 0.08]
    assert other.get("t:k") is None  # nothing of the refused transaction was written
    assert state.run(lambda tx: tx.put("k", 1) or "ok") == "ok" and other.get("t:k") == b"1"


def test_a_contended_ticker_answers_503_with_retry_after(tmp_path):
    import io

    from handlers.entwine.ticker import TickerApp

    class Contended:
        def run(self, fn):
            raise TickerError(503, "still contended")

    seen = {}
    app = TickerApp(Contended(), signer=None)  # type: ignore[arg-type]
    body = b"".join(app({"REQUEST_METHOD": "POST", "PATH_INFO": "/api/v1/tick", "CONTENT_LENGTH": "0",
                         "wsgi.input": io.BytesIO(b"")}, lambda status, headers: seen.update(status=status,
                                                                                              headers=dict(headers))))
    assert seen["status"].startswith("503") and seen["headers"]["Retry-After"] == "1"
    assert b"contended" in body


def test_a_dynamo_ticker_state_that_stays_contended_refuses_with_503_after_its_cap(aws):
    from handlers.connectors.aws import client, options
    from handlers.entwine.ticker_state import Contention, DynamoTickerState

    ddb = client("dynamodb")
    ddb.create_table(TableName="ticker", KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
                     AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
                     BillingMode="PAY_PER_REQUEST")
    sleeps: list[float] = []
    state = DynamoTickerState(options("dynamo:tableName=ticker"), Contention(sleeps.append, lambda: 0.5, attempts=4))
    runs = []

    def contended(tx):
        runs.append(1)
        ddb.update_item(TableName="ticker", Key={"pk": {"S": "ticker/version"}}, UpdateExpression="ADD v :one",
                        ExpressionAttributeValues={":one": {"N": "1"}})  # another instance commits first
        tx.put("k", len(runs))

    with pytest.raises(TickerError) as refused:
        state.run(contended)
    assert refused.value.status == 503 and len(runs) == 4 and sleeps == [0.0025, 0.005, 0.01]
    assert "Item" not in ddb.get_item(TableName="ticker", Key={"pk": {"S": "ticker/k"}})
    assert state.run(lambda tx: tx.put("k", 7) or "ok") == "ok"
    assert state.run(lambda tx: tx.get("k")) == 7
