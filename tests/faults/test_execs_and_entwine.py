"""The extended config under faults: a spawner and an exec transform (faults in the executable runner) and
entwine (faults in the ticker client and the substream's state), beside the base config's stages.

Besides the base comparison, every record's message is in the substream exactly once and the substream
verifies, and each executable ran as ``_world`` defines it: once in every delivery that settled the record,
at most once in any other delivery of it, never outside one."""

from __future__ import annotations

import pytest
from _faults import ADAPTERS, MODES, SMALL_BATCH, fault_config, numbered, sweep
from _world import World

from agglo_core import Plan, compile_plan

MODES_OF = {"Cloud Functions Pub/Sub": ("before", "after")}


@pytest.fixture(scope="module")
def extended_plan(world: World) -> Plan:
    return compile_plan(fault_config(world=world), world.keys)


@pytest.mark.parametrize("adapter", list(ADAPTERS))
def test_faults_in_executables_and_ticker_calls_then_redelivery_lose_and_repeat_nothing(
        adapter, memory_backend, world, extended_plan, tmp_path) -> None:
    sweep(memory_backend, adapter, numbered(SMALL_BATCH), tmp_path, completions=1, open_joins={"j2": ["a"]},
          modes=MODES_OF.get(adapter, MODES), plan=extended_plan, world=world, label=" + execs, entwine")


@pytest.mark.parametrize("backend", ["sqlite", "redis"])
def test_the_extended_config_on_the_other_local_stores(backend, world, extended_plan, request, tmp_path) -> None:
    sweep(request.getfixturevalue(f"{backend}_backend"), "Lambda SQS", numbered(SMALL_BATCH), tmp_path,
          completions=1, open_joins={"j2": ["a"]}, plan=extended_plan, world=world, label=" + execs, entwine")


# Over HTTP to moto every scenario costs a second: the first and last effect of each kind (all of them nightly).
def test_the_extended_config_on_dynamodb_at_each_kind_of_effect(dynamo_backend, world, extended_plan, tmp_path) -> None:
    sweep(dynamo_backend, "Lambda SQS", numbered(SMALL_BATCH), tmp_path, completions=1, open_joins={"j2": ["a"]},
          modes=("after", "crash"), every_effect=False, plan=extended_plan, world=world, label=" + execs, entwine")
