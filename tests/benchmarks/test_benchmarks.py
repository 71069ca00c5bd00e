"""The benchmark code runs at a tiny size in make test, so it cannot rot. No timing is asserted."""

from __future__ import annotations

import pytest

from benchmarks import (
    agglo_run,
    batch_of_one,
    bytewax_peer,
    cold_start,
    condition_heavy,
    core_throughput,
    state_round_trips,
    warm_batch,
)


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


def test_batches_of_one_give_what_batches_of_500_give_in_memory_and_in_sqlite():
    batch_of_one.check(600)  # tee bodies, ids and every field record for record; the sums where batches end


def test_batch_of_one_measurement_runs_every_side():
    per = batch_of_one.measure(40, 1)
    assert set(per) == {(s, n) for s in batch_of_one.STORES for n in batch_of_one.SIZES}
    assert all(us > 0 for us in per.values())


def test_the_bytewax_twin_writes_what_agglo_run_writes():
    bytewax_peer.check(1100)  # three of agglo run's batches: the running sum's float additions included


def test_bytewax_measurement_runs_every_side():
    times = bytewax_peer.measure(50, 1)  # raises unless every side wrote one line per event
    assert set(times) == {f"agglo run, {store}, {cache}" for store in ("memory", "SQLite")
                          for cache in (bytewax_peer.CACHE_WARM, bytewax_peer.CACHE_COLD)} | {"Bytewax"}
