"""The benchmark code runs at a tiny size in make test, so it cannot rot. No timing is asserted."""

from __future__ import annotations

import pytest

from benchmarks import agglo_run, cold_start, condition_heavy, core_throughput, state_round_trips, warm_batch


@pytest.mark.parametrize("workload", [core_throughput, condition_heavy])
def test_the_hand_written_twin_and_agglo_agree(workload):
    core_throughput.check(workload.runners(), 1100)


def test_throughput_measurement_runs():
    rates = core_throughput.measure(condition_heavy.runners(), 200, 1)
    assert set(rates) == {"hand-written", "agglo"} and all(r > 0 for r in rates.values())


def test_dynamodb_round_trips_are_one_write_per_key():
    calls = state_round_trips.measure()
    assert calls["without dedupe"] == {"UpdateItem": state_round_trips.GROUPS}
    assert calls["with dedupe"] == {"GetItem": state_round_trips.GROUPS,
                                    "TransactWriteItems": state_round_trips.GROUPS}


def test_agglo_run_end_to_end_measurement_runs_and_counts_every_output():
    result = agglo_run.measure(300, 1)  # raises unless both sides wrote one line per event
    assert result["agglo run"]["rss_mib"] > 0 and result["orjson loop"]["rate"] > 0


def test_cold_start_measurement_runs_both_handlers_against_moto():
    times = cold_start.measure(1)  # asserts the baseline's UpdateItem landed
    assert len(times) == 3 and all(t["wall"] > 0 and t["cpu"] > 0 for t in times.values())


def test_warm_batch_measurement_runs_the_lambda_handler_and_agglo_run():
    rates = warm_batch.measure(1, records=20)  # asserts no record failed on either side
    assert len(rates) == 3 and all(r["wall"] > 0 for r in rates.values())
