"""``make bench``: every workload beside its baseline, medians over several runs, as a table.

    python -m benchmarks.run [--events N] [--lines N] [--runs R]

See benchmarks/RESULTS.md for what each workload is and the latest results.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import platform
import sys
import time
from typing import Any


def _row(*cells: Any) -> None:
    print("| " + " | ".join(str(c) for c in cells) + " |", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="benchmarks.run")
    parser.add_argument("--events", type=int, default=100_000, help="events for workload 1")
    parser.add_argument("--lines", type=int, default=1_000_000, help="lines for workload 2")
    parser.add_argument("--runs", type=int, default=5, help="runs per side (workloads 2 and 5: at most 3)")
    args = parser.parse_args(argv)
    few = min(args.runs, 3)

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

    print(f"# {time.strftime('%Y-%m-%d')} · Python {platform.python_version()} · {platform.machine()} · "
          f"{platform.processor() or platform.platform()}\n")
    _row("workload", "baseline", "agglo", "ratio", "target")
    _row(*["---"] * 5)

    for label, workload, target in (("1a. binge's basic pipeline", core_throughput, "≥ 0.9×"),
                                    ("1b. 12-process, condition-heavy pipeline", condition_heavy, "≥ 0.7×")):
        core_throughput.check(workload.runners())
        rates = core_throughput.measure(workload.runners(), args.events, args.runs)
        twin, agglo = rates["hand-written"], rates["agglo"]
        _row(f"{label}, {args.events:,} events in memory (CPU time, median of {args.runs})",
             f"hand-written twin {twin:,.0f} ev/s", f"{agglo:,.0f} ev/s", f"{agglo / twin:.2f}×", target)

    run = agglo_run.measure(args.lines, few)
    base, agglo = run["orjson loop"], run["agglo run"]
    _row(f"2. `agglo run`, {args.lines:,} lines, annotate + transform + aggregate in SQLite "
         f"(CPU time, median of {few})",
         f"orjson loop {base['rate']:,.0f} lines/s", f"{agglo['rate']:,.0f} lines/s, peak {agglo['rss_mib']:.0f} MiB",
         f"{agglo['rate'] / base['rate']:.2f}×", "≥ 0.45×, memory flat")

    with contextlib.redirect_stdout(io.StringIO()):  # Powertools prints metrics (EMF) to stdout
        cold = cold_start.measure(args.runs)
    base = cold.pop("Powertools + boto3")
    for name, side in cold.items():
        _row(f"3. Lambda cold start, one SQS record on moto: {name} (spawn to exit, median of {args.runs})",
             f"Powertools BatchProcessor + boto3 {base['wall']:.2f} s wall, {base['cpu']:.2f} s CPU",
             f"{side['wall']:.2f} s wall, {side['cpu']:.2f} s CPU",
             f"{side['wall'] / base['wall']:.2f}× wall, {side['cpu'] / base['cpu']:.2f}× CPU", "≤ 1.15×")

    with contextlib.redirect_stdout(io.StringIO()):
        calls = state_round_trips.measure()
    plain, deduped = calls["without dedupe"], calls["with dedupe"]
    _row(f"4. DynamoDB calls, SQS batch of {state_round_trips.RECORDS} over {state_round_trips.GROUPS} keys (moto)",
         "binge: several per record", f"without dedupe {plain}; with dedupe (the Lambda default) {deduped}",
         f"{plain.get('UpdateItem', 0) / state_round_trips.GROUPS:.0f} write per key", "≤ 1 write per key")

    with contextlib.redirect_stdout(io.StringIO()):
        warm = warm_batch.measure(few)
    lam = warm.pop("Lambda handler, Kinesis, DynamoDB (moto)")
    for name, side in warm.items():
        _row(f"5. warm batch of {warm_batch.RECORDS} Kinesis records: Lambda handler with DynamoDB (moto) "
             f"against {name} (median of {few})",
             f"{name}: {side['wall']:,.0f} rec/s", f"Lambda: {lam['wall']:,.0f} rec/s wall, "
             f"{lam['cpu']:,.0f} rec/s of this process's CPU", f"{lam['cpu'] / side['cpu']:.2f}× CPU", "(overhead)")

    batch_of_one.check()
    per = batch_of_one.measure(args.events // 5, args.runs)
    for stores in batch_of_one.STORES:
        one, many = per[(stores, 1)], per[(stores, 500)]
        _row(f"6. binge's basic pipeline through `Runtime.process`, batches of 1 against 500, {stores} stores, "
             f"{args.events // 5:,} records (CPU per record, median of {args.runs})",
             f"batch of 500: {many:.1f} µs", f"batch of 1: {one:.1f} µs", f"{one / many:.2f}×", "≤ 1.5×")

    bytewax_peer.check()
    peer = bytewax_peer.measure(args.events, few)
    bw = peer.pop("Bytewax")
    for name, side in peer.items():
        _row(f"7. {name} against Bytewax 0.21 (`bytewax.run`, one worker), binge's basic pipeline, "
             f"{args.events:,} events, file in, stdout out (spawn to exit, median of {few})",
             f"Bytewax {bw['cpu']:.2f} s CPU, {bw['wall']:.2f} s wall",
             f"{side['cpu']:.2f} s CPU, {side['wall']:.2f} s wall",
             f"{bw['cpu'] / side['cpu']:.2f}× CPU, {bw['wall'] / side['wall']:.2f}× wall (Bytewax's time / agglo's)",
             "> 1×")
    return 0


if __name__ == "__main__":
    sys.exit(main())
