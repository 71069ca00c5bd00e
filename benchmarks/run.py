"""``make bench``: every workload beside its baseline, medians over several runs, as a table.

    python -m benchmarks.run [--events N] [--runs R]

Implemented so far: core throughput (workload 1, basic pipeline) and DynamoDB
round trips (workload 4). See benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import platform
import sys
import time


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="benchmarks.run")
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args(argv)

    from benchmarks import core_throughput, state_round_trips

    print(f"# {time.strftime('%Y-%m-%d')} · Python {platform.python_version()} · {platform.machine()} · "
          f"{platform.processor() or platform.platform()}")
    core_throughput.check()
    rates = core_throughput.measure(args.events, args.runs)
    ratio = rates["agglo"] / rates["hand-written"]
    print("\n| workload | baseline | agglo | ratio | target |\n|---|---|---|---|---|")
    print(f"| 1. basic pipeline, {args.events:,} events, in memory (median of {args.runs}) | "
          f"{rates['hand-written']:,.0f} ev/s | {rates['agglo']:,.0f} ev/s | {ratio:.2f}× | ≥ 0.5× |")
    calls = state_round_trips.measure()
    plain, deduped = calls["without dedupe"], calls["with dedupe"]
    print(f"| 4. DynamoDB calls, SQS batch of {state_round_trips.RECORDS} over {state_round_trips.GROUPS} keys | "
          f"binge: several per record | {sum(plain.values())} without dedupe {plain}; "
          f"{sum(deduped.values())} with dedupe {deduped} | "
          f"{sum(plain.values()) / state_round_trips.GROUPS:.0f} write per key | ≤ 1 write per key |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
