"""The benchmark code runs at a tiny size in make test, so it cannot rot. No timing is asserted."""

from __future__ import annotations

import pytest

from benchmarks import condition_heavy, core_throughput, state_round_trips


@pytest.mark.parametrize("workload", [core_throughput, condition_heavy])
def test_the_hand_written_twin_and_agglo_agree(workload):
    core_throughput.check(workload.runners(), 400)


def test_throughput_measurement_runs():
    rates = core_throughput.measure(condition_heavy.runners(), 200, 1)
    assert set(rates) == {"hand-written", "agglo"} and all(r > 0 for r in rates.values())


def test_dynamodb_round_trips_are_one_write_per_key():
    calls = state_round_trips.measure()
    assert calls["without dedupe"] == {"UpdateItem": state_round_trips.GROUPS}
    assert calls["with dedupe"] == {"GetItem": state_round_trips.GROUPS,
                                    "TransactWriteItems": state_round_trips.GROUPS}
