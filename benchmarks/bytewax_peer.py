"""Workload 7: ``agglo run`` against the same pipeline written for Bytewax 0.21, end to end.

binge's basic pipeline without its tees (Bytewax has nothing to tee to): annotate
``foobar`` when ``someDict.someFixed`` is "foobar", a running sum of ``someNum``
forwarded on the event, and the regex transform of ``someVocab``. Both sides are
fresh processes that read the same JSON-lines file and write JSON lines to a pipe:
agglo with ``agglo run -i FILE``, its state in memory or in SQLite; Bytewax with
``python -m bytewax.run benchmarks.bytewax_peer:flow`` (one worker, its
``FileSource`` in, its ``StdOutSink`` out). CPU time (``wait4``) and wall time of
each child, medians over alternating runs.

agglo is measured twice per state store: as a second run of the config (its validated
plan from the cache of plans, no pydantic; a warm-up run on no events fills a cache
of its own first), which is how Bytewax is measured (its flow and the modules it
imports run from bytecode an earlier run wrote), and as a first run (an empty cache:
the config is validated and its plan cached). The labels say which.

The Bytewax flow stamps the two ``internal:`` fields agglo adds and adds ``someNum``
in agglo's order (each batch of ``agglo run`` adds its own sum to the stored total),
so its outputs equal agglo's line for line, floats included (``check``).
"""

from __future__ import annotations

import os
import pathlib
import re
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from typing import Any

import orjson

from benchmarks.agglo_run import _run, byte_compile_agglo, write_input
from handlers.local import BATCH
from handlers.runtime.plan_cache import ENV as CACHE_ENV
from handlers.runtime.plan_cache import SUBDIR

PARTITION = "c5024ca8-d601-499f-bb24-daae74357b5e"
PIPELINE = "BasicPipeline"
SUMS = f"internal:aggregation:{PIPELINE}"
INPUT_ENV = "BYTEWAX_PEER_INPUT"
"""The JSON-lines file the Bytewax flow reads (``bytewax.run`` takes a flow, not arguments)."""


def config(state: str) -> dict[str, Any]:
    """binge's basic pipeline (tests/fixtures/binge/configs/basic__basic_pipeline.json) without its tees."""
    some_fixed = {"lhs": {"variable": {"name": "someDict.someFixed"}}, "rhs": {"literal": "foobar"}, "op": "Equal"}
    return {
        "partitionUuid": PARTITION,
        "pipelines": [{"name": PIPELINE, "processes": [{"name": n} for n in
                                                       ("AnnotateFooBar", "SumSomeNum", "RemovePrefix")]}],
        "externalSystems": [{"name": "AggregatorStateKVStore", "connectionString": state,
                             "externalType": "ExternalKVStore"}],
        "processDefinitions": [
            {"annotator": {"name": "AnnotateFooBar", "annotations": [
                {"fieldKey": "foobar", "value": "found", "condition": {"expression": {"comparator": some_fixed}}}]}},
            {"aggregator": {"name": "SumSomeNum", "condition": {}, "stateStore": "AggregatorStateKVStore",
                            "forwardState": True, "aggregation": {"key": "someNum", "aggregationType": "AggSum",
                                                                  "groupByKeys": []}}},
            {"transformer": {"name": "RemovePrefix", "forwardInputFields": True, "specs": [
                {"sourceField": "someVocab", "targetField": "someVocabSansPrefix", "transformation": {
                    "transformationType": "TransformMapRegex", "condition": {},
                    "mapRegexArgs": {"regex": "buzz/(.*)", "replace": "$1"}}}]}},
        ],
    }


# --- the Bytewax side: what a user would write for this pipeline ------------------------------------------

def annotate(e: dict[str, Any]) -> dict[str, Any]:
    e["internal:partitionID"] = PARTITION
    e["internal:name"] = PIPELINE
    some = e.get("someDict")
    if type(some) is dict and some.get("someFixed") == "foobar":
        e["foobar"] = "found"
    return e


SumState = tuple[Any, Any, int]
"""(the total of finished batches, this batch's sum, records seen in this batch)."""


def running_sum(state: SumState | None, e: dict[str, Any]) -> tuple[SumState, dict[str, Any]]:
    stored, batch_sum, seen = state or (None, None, 0)
    num = e.get("someNum")
    if type(num) is int or type(num) is float:
        batch_sum = num if batch_sum is None else batch_sum + num
        total = batch_sum if stored is None else stored + batch_sum
        e[SUMS] = {"someNum:AggSum": {"value": total}}
    seen += 1
    if seen == BATCH:  # where agglo run's batch ends, it adds the batch's sum to the stored total
        stored = stored if batch_sum is None else batch_sum if stored is None else stored + batch_sum
        batch_sum, seen = None, 0
    return (stored, batch_sum, seen), e


_strip_prefix = re.compile("buzz/(.*)")


def transform(e: dict[str, Any]) -> dict[str, Any]:
    vocab = e.get("someVocab")
    if type(vocab) is str:
        e["someVocabSansPrefix"] = _strip_prefix.sub(r"\g<1>", vocab)
    return e


def build_flow(path: str) -> Any:
    import bytewax.operators as op
    from bytewax.connectors.files import FileSource
    from bytewax.connectors.stdio import StdOutSink
    from bytewax.dataflow import Dataflow

    flow = Dataflow("basic_pipeline")
    events = op.map("parse", op.input("in", flow, FileSource(path)), orjson.loads)
    annotated = op.map("annotate", events, annotate)
    summed = op.stateful_map("sum", op.key_on("one_total", annotated, lambda _: "all"), running_sum)
    transformed = op.map("transform", op.key_rm("unkey", summed), transform)
    op.output("out", op.map("serialise", transformed, lambda e: orjson.dumps(e).decode()), StdOutSink())
    return flow


def __getattr__(name: str) -> Any:
    """``flow``, built when ``bytewax.run`` asks for it (importing this module needs no Bytewax)."""
    if name == "flow":
        return build_flow(os.environ[INPUT_ENV])
    raise AttributeError(name)


# --- running both -------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Side:
    argv: list[str]
    env: dict[str, str] | None
    warm_up: list[str] | None = None
    """Run (unmeasured, on no events) just before: fills the cache of plans for the measured run."""


CACHE_WARM = "plan cached (a second run)"
CACHE_COLD = "first run (validates, caches the plan)"


def _sides(d: pathlib.Path, events: pathlib.Path, run: int) -> dict[str, Side]:
    """agglo in memory and in SQLite, each as a second run (its validated plan from the cache of plans, as
    Bytewax's flow comes from bytecode its interpreter wrote before) and as a first run (an empty cache:
    the config validated, with pydantic, and its plan written to the cache); and Bytewax."""
    agglo = str(pathlib.Path(sys.executable).parent / "agglo")
    sides: dict[str, Side] = {}
    for store in ("memory", "SQLite"):
        for cache, label in (("warm", CACHE_WARM), ("cold", CACHE_COLD)):
            tag = f"{store}-{cache}-{run}"
            cfg = d / f"config-{tag}.json"
            cfg.write_bytes(orjson.dumps(config("mem:sum" if store == "memory" else f"sqlite:{d / f'state-{tag}.db'}")))
            env = {**os.environ, CACHE_ENV: str(d / f"cache-{tag}")}  # a new, empty cache for each run and side
            warm_up = [agglo, "run", "-c", str(cfg), "-i", os.devnull] if cache == "warm" else None
            sides[f"agglo run, {store}, {label}"] = Side([agglo, "run", "-c", str(cfg), "-i", str(events)], env,
                                                         warm_up)
    sides["Bytewax"] = Side([sys.executable, "-m", "bytewax.run", "benchmarks.bytewax_peer:flow"],
                            {**os.environ, INPUT_ENV: str(events)})
    return sides


def _warm_up(side: Side) -> None:
    if side.warm_up is not None and side.env is not None:
        subprocess.run(side.warm_up, env=side.env, stdin=subprocess.DEVNULL, capture_output=True, check=True)
        if not any(pathlib.Path(side.env[CACHE_ENV], SUBDIR).glob("*.json")):
            raise RuntimeError(f"{side.warm_up} cached no plan: the run after it would not be a second run")


def outputs(n: int) -> dict[str, list[Any]]:
    """Every side's output lines, parsed, for ``n`` events."""
    with tempfile.TemporaryDirectory(prefix="agglo-bytewax-") as tmp:
        d = pathlib.Path(tmp)
        events = d / "events.jsonl"
        write_input(events, n)
        out = {}
        for name, side in _sides(d, events, 0).items():
            _warm_up(side)
            out[name] = [orjson.loads(line) for line in subprocess.run(
                side.argv, env=side.env, stdin=subprocess.DEVNULL, capture_output=True, check=True).stdout.splitlines()]
        return out


def check(n: int = 1200) -> None:
    """Bytewax's outputs equal agglo's, line for line, over several of agglo's batches."""
    out = outputs(n)
    bytewax = out.pop("Bytewax")
    assert len(bytewax) == n, f"Bytewax wrote {len(bytewax)} lines for {n} events"
    for name, lines in out.items():
        assert lines == bytewax, f"{name} and Bytewax differ"


def measure(n: int, runs: int) -> dict[str, dict[str, float]]:
    """Median CPU and wall seconds of each side over ``runs`` alternating runs of ``n`` events."""
    results: dict[str, list[dict[str, float]]] = {}
    byte_compile_agglo()
    with tempfile.TemporaryDirectory(prefix="agglo-bytewax-") as tmp:
        d = pathlib.Path(tmp)
        events = d / "events.jsonl"
        write_input(events, n)
        for i in range(runs):
            for name, side in _sides(d, events, i).items():
                _warm_up(side)
                result = _run(side.argv, events, side.env)
                if result["outputs"] != n:
                    raise RuntimeError(f"{name} wrote {result['outputs']} lines for {n} events")
                results.setdefault(name, []).append(result)
    return {name: {k: sorted(r[k] for r in rs)[len(rs) // 2] for k in ("cpu", "wall")}
            for name, rs in results.items()}


if __name__ == "__main__":
    check()
    for side, t in measure(int(sys.argv[1]) if len(sys.argv) > 1 else 100_000, 3).items():
        print(f"{side}: {t['cpu']:.2f} s CPU, {t['wall']:.2f} s wall")
