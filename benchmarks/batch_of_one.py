"""Workload 6: what a record costs at batch size 1 against a batch of 500, through ``Runtime.process``.

Pub/Sub push, SQS FIFO, API Gateway and ``agglo serve`` hand the runtime one
record at a time, so whatever the runtime, the core and the connectors pay per
call (not per record) is paid by every record there. Binge's basic pipeline
(two tees, a conditional annotation, a running sum forwarded on the event, a
regex transform) runs with dedupe on (the platforms' default), its tees and
state either in memory or in one SQLite file. The measure is CPU time per
record, the same records through fresh runtimes, batch sizes alternating.

    python -m benchmarks.batch_of_one [--events N] [--runs R] [--profile {memory,sqlite}]

``--only {memory,sqlite}`` runs batches of one and nothing else, for a sampling profiler outside
the process; ``profiles/batch-of-one-memory.svg`` was made that way:

    py-spy record -r 500 -f flamegraph -o benchmarks/profiles/batch-of-one-memory.svg -- \
        python -m benchmarks.batch_of_one --only memory --events 30000
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import pathlib
import pstats
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from agglo_core import Outcome, Record, compile_plan
from agglo_core.records import parsed_record
from benchmarks.core_throughput import CONFIG, lines
from handlers.connectors import Registry
from handlers.connectors.memory import MemoryStore
from handlers.connectors.sqlite import SqliteKV
from handlers.runtime.driver import Runtime

SIZES = (1, 500)
STORES = ("memory", "sqlite")


@contextmanager
def runtime(stores: str) -> Iterator[Runtime]:
    """A fresh runtime for binge's basic pipeline, every external system in ``stores`` (memory or SQLite)."""
    registry = Registry()
    with tempfile.TemporaryDirectory(prefix="agglo-batch-of-one-") as tmp:
        if stores == "memory":
            def factory(ext: Any) -> Any:
                return MemoryStore(ext.name)
        else:
            db = str(pathlib.Path(tmp, "state.db"))

            def factory(ext: Any) -> Any:
                return SqliteKV(db)
        for external_type, scheme in (("ExternalLocalFile", ""), ("ExternalKVStore", "mem")):
            registry.register(external_type, scheme, factory)
        yield Runtime.build(compile_plan(CONFIG.read_bytes()), registry)


def records(n: int) -> list[Record]:
    """As SQS, SNS and Kinesis sources make them: parsed, with the proof that they can be written."""
    return [parsed_record(f"in#{i}", line) for i, line in enumerate(lines(n))]


def run_batches(rt: Runtime, recs: list[Record], size: int) -> list[Outcome]:
    out: list[Outcome] = []
    for start in range(0, len(recs), size):
        out.extend(rt.process(recs[start:start + size]))
    return out


def outputs(outcomes: list[Outcome]) -> list[Any]:
    """What the records produced, failures included, for comparing batch sizes."""
    return [(o.record.id, o.outputs, [e.message for e in o.errors]) for o in outcomes]


def check(n: int = 1000) -> None:
    """Batches of one produce what batches of 500 do, except the running sum's order of addition.

    Each batch adds its combined sum to the stored total, so the forwarded totals agree at batch
    ends; everything else (tee bodies, ids, every other field) is the same record for record.
    """
    recs = records(n)
    for stores in STORES:
        results = []
        for size in SIZES:
            with runtime(stores) as rt:
                outcomes = run_batches(rt, recs, size)
                assert all(not o.errors for o in outcomes), [o.errors for o in outcomes if o.errors][:3]
                results.append(outcomes)
        one, many = results
        for a, b in zip(one, many, strict=True):
            (pa, ea), (pb, eb) = a.outputs[0], b.outputs[0]
            sums = "internal:aggregation:BasicPipeline"
            assert pa == pb and {k: v for k, v in ea.items() if k != sums} == \
                {k: v for k, v in eb.items() if k != sums}, f"{stores}: record {a.record.id} differs"
        last_one, last_many = one[-1].outputs[0][1], many[-1].outputs[0][1]
        assert last_one["internal:aggregation:BasicPipeline"] == last_many["internal:aggregation:BasicPipeline"]


def measure(n: int, runs: int, stores: tuple[str, ...] = STORES) -> dict[tuple[str, int], float]:
    """Median CPU microseconds per record for each (stores, batch size), alternating runs."""
    recs = records(n)
    results: dict[tuple[str, int], list[float]] = {(s, size): [] for s in stores for size in SIZES}
    for _ in range(runs):
        for s in stores:
            for size in SIZES:
                with runtime(s) as rt:
                    gc.collect()
                    started = time.process_time()
                    run_batches(rt, recs, size)
                    results[(s, size)].append((time.process_time() - started) / n * 1e6)
    return {k: sorted(v)[len(v) // 2] for k, v in results.items()}


def profile(stores: str, n: int, size: int = 1, top: int = 30) -> None:
    """cProfile of ``n`` records at batch ``size``, the functions with the most time of their own first."""
    recs = records(n)
    with runtime(stores) as rt:
        prof = cProfile.Profile()
        prof.enable()
        run_batches(rt, recs, size)
        prof.disable()
    pstats.Stats(prof).sort_stats("tottime").print_stats(top)


def main(argv: list[str] | None = None, report: Callable[[str], None] = print) -> int:
    parser = argparse.ArgumentParser(prog="benchmarks.batch_of_one")
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--profile", choices=STORES, help="profile batches of one instead of measuring")
    parser.add_argument("--only", choices=STORES, help="run batches of one, for a profiler outside the process")
    args = parser.parse_args(argv)
    if args.profile:
        profile(args.profile, args.events)
        return 0
    if args.only:
        with runtime(args.only) as rt:
            run_batches(rt, records(args.events), 1)
        return 0
    check()
    per = measure(args.events, args.runs)
    for s in STORES:
        one, many = per[(s, 1)], per[(s, 500)]
        report(f"{s}: batch of 1 {one:.1f} µs/record, batch of 500 {many:.1f} µs/record, {one / many:.2f}×")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
