"""Workload 2: ``agglo run`` end to end, a million JSON lines, SQLite state, against an orjson loop.

Both sides are fresh processes reading the same file and writing JSON lines to
a pipe that is drained and discarded. agglo annotates (with a condition),
transforms (regex), sums ``someNum`` per ``someVocab`` group into SQLite and
forwards the state. The baseline parses and re-serialises each line with
orjson, the least any tool must do. CPU time and peak resident memory come from
``wait4`` for each child alone.
"""

from __future__ import annotations

import compileall
import os
import pathlib
import subprocess
import sys
import tempfile
import threading
import time
from typing import Any

import orjson

from benchmarks.core_throughput import lines

BASELINE = """
import sys, orjson
loads, dumps, write = orjson.loads, orjson.dumps, sys.stdout.buffer.write
for line in sys.stdin.buffer:
    write(dumps(loads(line)) + b"\\n")
"""


def config(state: str) -> dict[str, Any]:
    someFixed = {"lhs": {"variable": {"name": "someDict.someFixed"}}, "rhs": {"literal": "foobar"}, "op": "Equal"}
    return {
        "partitionUuid": "9b2f4c1e-7a3d-4e5f-8a6b-1c2d3e4f5a6b",
        "pipelines": [{"name": "Run", "processes": [{"name": n} for n in ("Annotate", "Strip", "Sum")]}],
        "externalSystems": [{"name": "State", "connectionString": f"sqlite:{state}", "externalType": "ExternalKVStore"}],
        "processDefinitions": [
            {"annotator": {"name": "Annotate", "annotations": [
                {"fieldKey": "foobar", "value": "found", "condition": {"expression": {"comparator": someFixed}}}]}},
            {"transformer": {"name": "Strip", "forwardInputFields": True, "specs": [
                {"sourceField": "someVocab", "targetField": "someVocabSansPrefix", "transformation": {
                    "transformationType": "TransformMapRegex",
                    "mapRegexArgs": {"regex": "buzz/(.*)", "replace": "$1"}}}]}},
            {"aggregator": {"name": "Sum", "stateStore": "State", "forwardState": True, "aggregation": {
                "key": "someReference", "aggregationType": "AggSum", "groupByKeys": ["someVocabSansPrefix"]}}},
        ],
    }


def write_input(path: pathlib.Path, n: int, distinct: int = 100_000) -> None:
    """``n`` lines: ``distinct`` generated events, repeated (each line is still its own record)."""
    chunk = b"\n".join(lines(min(n, distinct))) + b"\n"
    per = chunk.count(b"\n")
    with path.open("wb") as f:
        for _ in range(n // per):
            f.write(chunk)
        rest = n % per
        if rest:
            f.write(b"".join(chunk.splitlines(keepends=True)[:rest]))


def byte_compile_agglo() -> None:
    """Bytecode for agglo's own modules, as an installed package has (pip compiles at install).

    Where ``PYTHONDONTWRITEBYTECODE`` is set, an editable tree never gets any, and every ``agglo`` child would
    compile about 35 modules from source (~50 ms of CPU) that the baselines' installed packages do not.
    """
    root = pathlib.Path(__file__).parent.parent
    for package in ("agglo_core", "handlers", "benchmarks"):
        compileall.compile_dir(root / package, quiet=2)


def _peak_rss_kib(pid: int) -> int:
    """The process's peak resident memory so far (``VmHWM``; ``ru_maxrss`` would count the forked parent)."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def _sample_peak(pid: int, peaks: list[int], done: threading.Event) -> None:
    """Keep the child's peak memory in ``peaks[0]`` until ``done``."""
    while True:
        peaks[0] = max(peaks[0], _peak_rss_kib(pid))
        if done.wait(0.02):
            return


def _run(argv: list[str], stdin: pathlib.Path, env: dict[str, str] | None = None) -> dict[str, float]:
    """Wall and CPU seconds and peak RSS (MiB) of one child; its stdout counted and dropped."""
    with stdin.open("rb") as inp:
        started = time.perf_counter()
        child = subprocess.Popen(argv, stdin=inp, stdout=subprocess.PIPE, env=env)
        peaks, done = [0], threading.Event()
        sampler = threading.Thread(target=_sample_peak, args=(child.pid, peaks, done), daemon=True)
        sampler.start()
        out_lines = 0
        assert child.stdout is not None
        for block in iter(lambda: child.stdout.read(1 << 16), b""):  # type: ignore[union-attr]
            out_lines += block.count(b"\n")
        done.set()
        sampler.join()
        _, status, usage = os.wait4(child.pid, 0)
        child.returncode = os.waitstatus_to_exitcode(status)
        wall = time.perf_counter() - started
    if child.returncode != 0:
        raise RuntimeError(f"{argv[:3]} exited {child.returncode}")
    return {"wall": wall, "cpu": usage.ru_utime + usage.ru_stime, "rss_mib": peaks[0] / 1024,
            "outputs": out_lines}


def measure(n: int, runs: int) -> dict[str, dict[str, float]]:
    """Median CPU-time rate of each side over ``runs`` alternating runs, and agglo's peak memory."""
    agglo = str(pathlib.Path(sys.executable).parent / "agglo")
    byte_compile_agglo()
    with tempfile.TemporaryDirectory(prefix="agglo-bench-") as tmp:
        d = pathlib.Path(tmp)
        events = d / "events.jsonl"
        write_input(events, n)
        results: dict[str, list[dict[str, float]]] = {"orjson loop": [], "agglo run": []}
        for i in range(runs):
            cfg = d / f"config-{i}.json"
            cfg.write_bytes(orjson.dumps(config(str(d / f"state-{i}.db"))))
            results["orjson loop"].append(_run([sys.executable, "-c", BASELINE], events))
            results["agglo run"].append(_run([agglo, "run", "-c", str(cfg)], events))
    out: dict[str, dict[str, float]] = {}
    for name, rs in results.items():
        if any(r["outputs"] != n for r in rs):
            raise RuntimeError(f"{name} wrote {[r['outputs'] for r in rs]} lines for {n} events")
        rates = sorted(n / r["cpu"] for r in rs)
        out[name] = {"rate": rates[len(rates) // 2], "rss_mib": max(r["rss_mib"] for r in rs),
                     "wall_rate": sorted(n / r["wall"] for r in rs)[len(rs) // 2]}
    return out
