"""Workload 1: binge's basic pipeline, JSON lines in and out, in memory, against a hand-written twin.

Both sides parse each line with orjson, run annotate (with a condition),
a running sum forwarded on the event, a regex transform and two tees (kept in
memory, with the same deterministic uuids), and serialise the output. The twin
is what a careful engineer would write by hand for exactly this config; its
outputs and tee bodies must equal agglo's (``check``).
"""

from __future__ import annotations

import gc
import json
import pathlib
import re
import time
from collections.abc import Callable
from typing import Any

import orjson

from agglo_core import compile_plan
from agglo_core.ids import IdMaker
from agglo_core.records import parsed_record
from benchmarks.generate import events
from handlers.connectors import Registry
from handlers.connectors.memory import MemoryStore
from handlers.runtime.driver import Runtime

HERE = pathlib.Path(__file__).parent
CONFIG = HERE.parent / "tests" / "fixtures" / "binge" / "configs" / "basic__basic_pipeline.json"
GENERATOR = HERE / "basic_event_gen.json"
BATCH = 512


def lines(n: int) -> list[bytes]:
    return [orjson.dumps(e) for e in events(str(GENERATOR), n)]


Runner = tuple[Callable[[list[bytes]], list[bytes]], dict[str, Any]]


def agglo_runner(config: bytes | None = None) -> Runner:
    """agglo with in-memory tees (a local-file connector that keeps files in dicts); binge's basic config."""
    stores: dict[str, MemoryStore] = {}

    def memory_dir(ext: Any) -> MemoryStore:
        return stores.setdefault(ext.name, MemoryStore(ext.name))

    registry = Registry()
    registry.register("ExternalLocalFile", "", memory_dir)
    registry.register("ExternalKVStore", "mem", lambda ext: stores.setdefault(ext.name, MemoryStore(ext.name)))
    runtime = Runtime.build(compile_plan(config or CONFIG.read_bytes()), registry, dedupe=False)
    dumps = orjson.dumps

    def run(data: list[bytes]) -> list[bytes]:
        out: list[bytes] = []
        for start in range(0, len(data), BATCH):
            # As a source that parses the line makes them: with the proof that they can be written.
            records = [parsed_record(f"in#{start + i}", line) for i, line in enumerate(data[start:start + BATCH])]
            for outcome in runtime.process(records):
                out.extend(dumps(event) for _, event in outcome.outputs)
        return out

    return run, stores


def twin_runner() -> Runner:
    """The same work, written by hand for this one config."""
    cfg = json.loads(CONFIG.read_text())
    partition, pipeline = cfg["partitionUuid"], "BasicPipeline"
    before_ids, after_ids = (IdMaker(partition, pipeline, name, "tee") for name in ("BeforeTee", "AfterTee"))
    before_entry = {"outputType": "localfile", "connectionString": "/tmp/before-events"}
    after_entry = {"outputType": "localfile", "connectionString": "/tmp/after-events"}
    sub = re.compile("buzz/(.*)").sub
    stores: dict[str, dict] = {"BeforeEvents": {}, "AfterEvents": {}}
    before_store, after_store = stores["BeforeEvents"], stores["AfterEvents"]
    state = {"total": None}
    loads, dumps = orjson.loads, orjson.dumps

    def run(data: list[bytes]) -> list[bytes]:
        out = []
        stored, batch_sum = state["total"], None  # a batch adds its combined sum to the stored total, as agglo's
        for n, line in enumerate(data):
            rid = f"in#{n}"
            e = loads(line)
            e["internal:partitionID"] = partition
            e["internal:name"] = pipeline
            u1 = before_ids(rid)
            before_store[u1] = dict(e)
            e["internal:tee:output"] = [{"uuid": u1, **before_entry}]
            some = e.get("someDict")
            if type(some) is dict and some.get("someFixed") == "foobar":
                e["foobar"] = "found"
            num = e.get("someNum")
            if type(num) is int or type(num) is float:
                batch_sum = num if batch_sum is None else batch_sum + num
                total = batch_sum if stored is None else stored + batch_sum
                e["internal:aggregation:BasicPipeline"] = {"someNum:AggSum": {"value": total}}
            vocab = e.get("someVocab")
            if type(vocab) is str:
                e["someVocabSansPrefix"] = sub(r"\g<1>", vocab)
            u2 = after_ids(rid)
            after_store[u2] = dict(e)
            e["internal:tee:output"] = [*e["internal:tee:output"], {"uuid": u2, **after_entry}]
            out.append(dumps(e))
            if n % BATCH == BATCH - 1 and batch_sum is not None:  # where agglo's batches end
                stored, batch_sum = (batch_sum if stored is None else stored + batch_sum), None
        if batch_sum is not None:
            stored = batch_sum if stored is None else stored + batch_sum
        state["total"] = stored
        return out

    return run, stores


def runners() -> dict[str, Callable[[], Runner]]:
    return {"hand-written": twin_runner, "agglo": agglo_runner}


def check(make: dict[str, Callable[[], Runner]], n: int = 2000) -> None:
    """Both sides agree on every output and every tee body, over several batches."""
    data = lines(n)
    (twin, twin_stores), (agglo, agglo_stores) = make["hand-written"](), make["agglo"]()
    assert agglo(data) == twin(data), "outputs differ"
    assert twin_stores, "the twin keeps no tee bodies"
    for name, bodies in twin_stores.items():
        assert bodies and agglo_stores[name].data == bodies, f"tee bodies in {name} differ"


def measure(make: dict[str, Callable[[], Runner]], n: int, runs: int) -> dict[str, float]:
    """Median events/s of each side, alternating runs; fresh state every run.

    CPU time of this process, not wall time: both sides are single-threaded, and
    on a shared machine the wall clock mostly measures the neighbours.
    """
    data = lines(n)
    results: dict[str, list[float]] = {name: [] for name in make}
    for _ in range(runs):
        for name, runner in make.items():
            run, _ = runner()
            started = time.process_time()
            run(data)
            results[name].append(n / (time.process_time() - started))
            del run, _
            gc.collect()
    return {name: sorted(values)[len(values) // 2] for name, values in results.items()}
