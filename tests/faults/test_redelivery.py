"""Every platform redelivers: a fault at every effect of a batch, then the platform's own redelivery,
must end exactly where one delivery of each record ends (state, tee files and KV entries, messages,
completions). See ``_faults`` for the fault modes and the delivery styles."""

from __future__ import annotations

import pytest
from _faults import ADAPTERS, BATCH, MODES, RETRYING_PLAN, SMALL_BATCH, sweep

# One message per invocation: a crash and a failed effect both leave the message unacknowledged.
MODES_OF = {"Cloud Functions Pub/Sub": ("before", "after")}


@pytest.mark.parametrize("adapter", list(ADAPTERS))
@pytest.mark.parametrize("backend", ["memory", "sqlite", "redis"])
def test_a_fault_at_every_effect_then_redelivery_gives_the_once_only_result(backend, adapter, request, tmp_path):
    sweep(request.getfixturevalue(f"{backend}_backend"), adapter, BATCH, tmp_path, completions=3,
          open_joins={"j3": ["a"]}, modes=MODES_OF.get(adapter, MODES))


@pytest.mark.parametrize("backend", ["memory", "sqlite"])
def test_the_runtime_retrying_an_effect_whose_answer_was_lost_changes_nothing_twice(backend, request, tmp_path):
    """With retryStrategy, a failed call is retried at once: the store answers the marks it already has."""
    sweep(request.getfixturevalue(f"{backend}_backend"), "Lambda SQS", BATCH, tmp_path, completions=3,
          open_joins={"j3": ["a"]}, plan=RETRYING_PLAN)


# Over HTTP to moto and to Google's emulator every scenario costs a second: the first and last effect of
# each kind, not every one.
@pytest.mark.parametrize("adapter", ["Lambda SQS", "Lambda Kinesis"])
def test_dynamodb_faults_at_each_kind_of_effect(adapter, dynamo_backend, tmp_path):
    sweep(dynamo_backend, adapter, SMALL_BATCH, tmp_path, completions=1, open_joins={"j2": ["a"]},
          modes=("before",) if adapter == "Lambda Kinesis" else ("after", "crash"), every_effect=False)


def test_firestore_faults_at_each_kind_of_effect(firestore_backend, tmp_path):
    sweep(firestore_backend, "Cloud Functions Pub/Sub", SMALL_BATCH, tmp_path, completions=1,
          open_joins={"j2": ["a"]}, modes=("after",), every_effect=False)
