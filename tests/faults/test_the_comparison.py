"""The comparison itself can fail: bugs planted by the wrapper (an effect performed twice, an effect answered
as done but never performed) are found, and one the stores must absorb (a state change performed twice under
the same dedupe mark) is not."""

from __future__ import annotations

import pytest
from _faults import BATCH, PLAN, SMALL_BATCH, Fault, Setup, compare, fault_config, numbered, run_scenario

from agglo_core import compile_plan


@pytest.fixture(scope="module")
def extended(world) -> Setup:
    return Setup(compile_plan(fault_config(world=world), world.keys), world)


def _planted(backend, setup: Setup, events: list[dict], tmp_path, kind: str, mode: str):
    once = run_scenario(backend, "Lambda SQS", events, tmp_path / "once", Fault(), setup)
    k = once.kinds.index(kind) + 1
    return compare(once, run_scenario(backend, "Lambda SQS", events, tmp_path / mode, Fault(k, mode), setup))


def test_an_executable_run_twice_in_one_delivery_is_a_duplicate(memory_backend, extended, tmp_path) -> None:
    found = _planted(memory_backend, extended, numbered(SMALL_BATCH), tmp_path, "Exec ", "twice")
    assert any("spawn ran 2 times for record 0 in one delivery" in d for d in found.duplicated), found
    assert not found.lost, found


def test_an_executable_that_never_ran_is_lost(memory_backend, extended, tmp_path) -> None:
    found = _planted(memory_backend, extended, numbered(SMALL_BATCH), tmp_path, "Exec ", "skip")
    assert "spawn never ran for record 0" in found.lost, found


def test_a_tee_write_that_never_happened_is_lost(memory_backend, tmp_path) -> None:
    found = _planted(memory_backend, Setup(PLAN), BATCH, tmp_path, "Put Files", "skip")
    assert len(found.lost) == 1 and found.lost[0].startswith("file "), found


def test_an_object_entwine_never_stored_breaks_the_chain(memory_backend, extended, tmp_path) -> None:
    found = _planted(memory_backend, extended, numbered(SMALL_BATCH), tmp_path, "Put Objects", "skip")
    assert any("does not verify" in d for d in found.different), found


@pytest.mark.parametrize("backend", ["memory", "sqlite"])
def test_a_state_change_performed_twice_under_its_mark_changes_nothing_twice(backend, request, tmp_path) -> None:
    found = _planted(request.getfixturevalue(f"{backend}_backend"), Setup(PLAN), BATCH, tmp_path,
                     "ApplyDeltas State", "twice")
    assert not found, found
