"""A moving clock meets faults: every delivery comes an hour after the one before (longer than the join's
``timeoutMs``), so between a failure and its redelivery the joins' deadlines pass and the dedupe marks age.
The runtime, the ticker and the stores' marks all read the same clock (``MovingClock``)."""

from __future__ import annotations

import pytest
from _faults import (
    ADAPTERS,
    BATCH,
    MODES,
    SMALL_BATCH,
    TIMEOUT_MS,
    Fault,
    MovingClock,
    Setup,
    compare_moving,
    fault_config,
    numbered,
    run_scenario,
    sweep,
)

from agglo_core import compile_plan

STEP_S = TIMEOUT_MS / 1000 + 1  # a redelivery comes after every deadline set before it


@pytest.fixture
def moving(monkeypatch) -> MovingClock:
    from handlers.connectors import kv, memory, sqlite

    clock = MovingClock(STEP_S)
    for module in (kv, memory, sqlite):
        monkeypatch.setattr(module, "time", clock.connector_time())
    return clock


# The once-only run is one delivery in these (one Runtime.process call): its joins see one instant.
ONE_CALL = [a for a in ADAPTERS if a != "Cloud Functions Pub/Sub"]


@pytest.mark.parametrize("adapter", ONE_CALL)
@pytest.mark.parametrize("backend", ["memory", "sqlite"])
def test_deadlines_pass_between_a_fault_and_its_redelivery_and_no_answer_changes(
        backend, adapter, moving, request, tmp_path) -> None:
    """Marks outlive the redeliveries (7 days), deadlines do not: a redelivered record whose join add was
    remembered answers as it did; one whose add was not applied meets a timed-out join."""
    tally = sweep(request.getfixturevalue(f"{backend}_backend"), adapter, BATCH, tmp_path, completions=3,
                  open_joins={"j3": ["a"]}, clock=moving, label=" + moving clock")
    assert tally.timedout > 0, "no redelivery met a passed deadline: the clock did not reach the joins"


def test_entwine_and_executables_under_a_moving_clock(memory_backend, world, moving, tmp_path) -> None:
    plan = compile_plan(fault_config(world=world), world.keys)
    sweep(memory_backend, "Lambda SQS", numbered(SMALL_BATCH), tmp_path, completions=1, open_joins={"j2": ["a"]},
          modes=MODES, plan=plan, world=world, clock=moving, label=" + execs, entwine, moving clock")


def test_a_redelivery_later_than_the_marks_time_to_live_is_applied_again(memory_backend, moving, monkeypatch,
                                                                         tmp_path) -> None:
    """The documented limit of dedupe (``AGGLO_DEDUPE_TTL_S``): here the one sum whose write was committed
    before the failure counts its records twice (and the outputs that forward it show that); nothing is lost
    and no other state changes."""
    monkeypatch.setenv("AGGLO_DEDUPE_TTL_S", str(int(STEP_S / 2)))
    setup = Setup(compile_plan(fault_config()), clock=moving)
    once = run_scenario(memory_backend, "Lambda SQS", BATCH, tmp_path / "once", Fault(), setup)
    first_sum = once.kinds.index("ApplyDeltas State") + 1
    got = run_scenario(memory_backend, "Lambda SQS", BATCH, tmp_path / "late", Fault(first_sum, "after"), setup)
    found = compare_moving(once, got)
    assert not found.lost, found
    [twice] = found.duplicated
    assert "/SumN/" in twice, twice
    [(key, value)] = [(k, v) for k, v in got.state.items() if k.startswith("agg/") and v != once.state[k]]
    assert value["value"] == 2 * once.state[key]["value"], (key, value, once.state[key])
    assert all("AggSum" in d for d in found.different), found.different  # the forwarded sums, nothing else
