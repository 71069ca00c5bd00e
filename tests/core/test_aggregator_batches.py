"""The aggregator's call-of-one path and its batch path show the same records the same state.

A record counted alone takes ``AggregatorStage._run_one``; records counted together take ``run``'s
batch bookkeeping (each record's sum through it, in-batch marks). With integer amounts (exact whatever
the order of addition) and every record delivered twice (the second time a redelivery the store's marks
recognise, or counted again without dedupe), any split into batches must give each record the outcome,
and the store the state, of one record per call. Sums past the bounds are not drawn: a batch refuses
the record whose addition to the batch's own sum overflows, one call the record whose addition to the
stored sum does, which differ; the examples below pin each.
"""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st
from test_properties import PLANS, SETTINGS, records_of, view

from agglo_core import Record
from handlers.connectors.memory import MemoryStore

BOUND = 2**63 - 1

amounts = st.integers(-(2**40), 2**40) | st.integers(0, 3)
def state(store: MemoryStore) -> list[tuple[str, Any]]:
    """What the store holds, marks without their expiry time (a clock reading)."""
    return sorted((k, v["after"] if k.startswith("mark/") else v) for k, v in store.data.items())


payloads = st.fixed_dictionaries({"author": st.sampled_from(["ann", "bob"]), "someNum": amounts,
                                  "someVocab": st.sampled_from(["q", "buzz/a"])})


@SETTINGS
@given(payloads=st.lists(payloads, min_size=1, max_size=10), cuts=st.lists(st.integers(1, 10), min_size=1),
       dedupe=st.booleans())
def test_batches_show_what_calls_of_one_show(payloads: list[dict], cuts: list[int], dedupe: bool) -> None:
    plan = PLANS["aggregates"]
    records = records_of(payloads)
    batched, alone = MemoryStore("batched"), MemoryStore("alone")
    together, single = [], []
    for _ in range(2):  # then every record again, as a redelivery
        start, i = 0, 0
        while start < len(records):
            size = cuts[i % len(cuts)]
            together += plan.run(records[start:start + size], 0, batched.perform, None, dedupe)
            start, i = start + size, i + 1
        single += [plan.run([r], 0, alone.perform, None, dedupe)[0] for r in records]
    assert repr(view(together)) == repr(view(single))
    assert state(batched) == state(alone)


def test_a_sum_refused_alone_fails_its_record_and_redelivery_shows_the_first_view() -> None:
    plan = PLANS["aggregates"]
    records = records_of([{"author": "ann", "someNum": BOUND}, {"author": "ann", "someNum": 1},
                          {"author": "ann", "someNum": 0}])
    store = MemoryStore("alone")
    first = [plan.run([r], 0, store.perform)[0] for r in records]
    assert first[0].ok and not first[1].ok and first[2].ok
    assert f"could not update state in 'kv': StateOverflow: state field 'value' would become {BOUND + 1}" in \
        first[1].errors[0].message
    assert view(plan.run(records[:1], 0, store.perform)) == view(first[:1])


def test_a_batch_the_store_refuses_fails_only_the_record_at_fault() -> None:
    """The store refuses the batch's combined sum; each record's own change again fails the one at fault."""
    plan = PLANS["aggregates"]
    store = MemoryStore("batch")
    assert plan.run(records_of([{"author": "ann", "someNum": BOUND - 5}]), 0, store.perform)[0].ok
    batch = [{"author": "ann", "someNum": n} for n in (2, 9, 3)]
    outcomes = plan.run([Record(f"b{i}", p) for i, p in enumerate(batch)], 0, store.perform)
    assert [o.ok for o in outcomes] == [True, False, True]
    assert "could not update state in 'kv'" in outcomes[1].errors[0].message
    sums = [dict(o.outputs)["grouped"]["internal:aggregation:grouped"]["someNum:AggSum"] for o in (outcomes[0],
                                                                                                 outcomes[2])]
    assert sums == [{"ann": {"value": BOUND - 3}}, {"ann": {"value": BOUND}}]
