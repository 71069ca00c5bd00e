"""Workload 1a for a sampling profiler: agglo's side only, five runs of 30,000 events.

    PYTHONPATH=. py-spy record --rate 1000 -f flamegraph -o benchmarks/profiles/workload-1a.svg -- \
        python benchmarks/profiles/flame1a.py
"""

from benchmarks import core_throughput

if __name__ == "__main__":
    data = core_throughput.lines(30_000)
    run, _ = core_throughput.agglo_runner()
    for _ in range(5):
        run(data)
