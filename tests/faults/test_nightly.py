"""The nightly size (``make test-faults``; ``make test`` leaves these out): DynamoDB and Firestore in every
fault mode at every effect, and the extended config (executables, entwine) over the whole batch on every
local backend and through every adapter."""

from __future__ import annotations

import pytest
from _faults import ADAPTERS, BATCH, MODES, fault_config, numbered, sweep
from _world import World

from agglo_core import Plan, compile_plan

pytestmark = pytest.mark.faults_nightly

EXTENDED = " + execs, entwine"


@pytest.fixture(scope="module")
def extended_plan(world: World) -> Plan:
    return compile_plan(fault_config(world=world), world.keys)


@pytest.mark.parametrize("adapter", ["Lambda SQS", "Lambda Kinesis"])
def test_dynamodb_a_fault_at_every_effect_in_every_mode(adapter, dynamo_backend, tmp_path) -> None:
    sweep(dynamo_backend, adapter, BATCH, tmp_path, completions=3, open_joins={"j3": ["a"]})


def test_firestore_a_fault_at_every_effect_in_every_mode(firestore_backend, tmp_path) -> None:
    sweep(firestore_backend, "Cloud Functions Pub/Sub", BATCH, tmp_path, completions=3, open_joins={"j3": ["a"]},
          modes=MODES)


@pytest.mark.parametrize("adapter", list(ADAPTERS))
@pytest.mark.parametrize("backend", ["memory", "sqlite", "redis"])
def test_the_extended_config_over_the_whole_batch(backend, adapter, world, extended_plan, request, tmp_path) -> None:
    sweep(request.getfixturevalue(f"{backend}_backend"), adapter, numbered(BATCH), tmp_path, completions=3,
          open_joins={"j3": ["a"]}, plan=extended_plan, world=world, label=EXTENDED)


# Firestore has no GetItems or CompareAndPut, so it cannot hold entwine's substream (the README says so).
@pytest.mark.parametrize("adapter", ["Lambda SQS", "Lambda Kinesis"])
def test_the_extended_config_on_dynamodb(adapter, dynamo_backend, world, extended_plan, tmp_path) -> None:
    sweep(dynamo_backend, adapter, numbered(BATCH), tmp_path, completions=3, open_joins={"j3": ["a"]},
          plan=extended_plan, world=world, label=EXTENDED)
