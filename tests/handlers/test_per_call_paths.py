"""The paths every call takes (the runtime's crossings, the connector base, SQLite's single writes), against
models of what they must answer, over generated mixes of effects and failures."""

from __future__ import annotations

import os
import pathlib
import sqlite3
from typing import Any

from builders import config, external
from hypothesis import given, settings
from hypothesis import strategies as st

from agglo_core import EffectFailed, Put, Record, compile_plan
from agglo_core.effects import GetItems, RetryPolicy
from handlers.connectors import Registry
from handlers.connectors.memory import MemoryObjectStore
from handlers.connectors.sqlite import SqliteKV
from handlers.runtime.driver import Runtime
from handlers.runtime.settlement import RetryLimits

OK, TRANSIENT, PERMANENT = "ok", "transient", "permanent"


class Scripted:
    """Answers each effect from its own script: the n-th attempt at key K gets ``scripts[K][n]`` (then "ok")."""

    def __init__(self, scripts: dict[str, list[str]]) -> None:
        self.scripts, self.attempts, self.calls = scripts, {k: 0 for k in scripts}, 0

    def perform(self, effects: list[Any]) -> list[Any]:
        self.calls += 1
        out = []
        for e in effects:
            n, script = self.attempts[e.key], self.scripts[e.key]
            self.attempts[e.key] = n + 1
            answer = script[n] if n < len(script) else OK
            out.append(None if answer == OK else EffectFailed(answer, transient=answer == TRANSIENT))
        return out


def bare_runtime(targets: list[str]) -> Runtime:
    """A runtime whose plan is never run: ``perform`` is called directly; sleeps are free and recorded."""
    plan = compile_plan(config({"tee": {"name": "Out", "outputConnectorRef": "Out"}},
                               externals=(external("ExternalKVStore", "Out", "mem:unused"),)))
    runtime = Runtime(plan, {}, sleep=lambda s: None, rand=lambda: 1.0,
                      retry_limits=RetryLimits(max_sleep_s=0.001, budget_s=1e9))
    runtime.connectors = {t: Scripted({}) for t in targets}
    return runtime


effect_scripts = st.lists(
    st.tuples(st.sampled_from(["A", "B", "nowhere"]), st.integers(0, 3),
              st.lists(st.sampled_from([OK, TRANSIENT, PERMANENT]), max_size=5)),
    min_size=1, max_size=12)


@settings(max_examples=150, deadline=None)
@given(effect_scripts)
def test_perform_retries_each_effect_as_its_policy_allows_and_answers_in_order(specs):
    runtime = bare_runtime(["A", "B"])
    effects = []
    for i, (target, retries, script) in enumerate(specs):
        key = f"k{i}"
        if target in runtime.connectors:
            runtime.connectors[target].scripts[key] = script
            runtime.connectors[target].attempts[key] = 0
        effects.append(Put(target, key, {"i": i}, RetryPolicy(retries, 1)))

    results = runtime.perform(effects)

    assert len(results) == len(effects)
    for i, ((target, retries, script), result) in enumerate(zip(specs, results, strict=True)):
        if target == "nowhere":
            assert isinstance(result, EffectFailed) and "no connector" in result.message
            continue
        # The model: attempts go on while the answer is transient and retries are left.
        tries = 1
        while tries <= len(script) and script[tries - 1] == TRANSIENT and tries <= retries:
            tries += 1
        final = script[tries - 1] if tries <= len(script) else OK
        assert runtime.connectors[target].attempts[f"k{i}"] == tries, (i, script, retries)
        if final == OK:
            assert result is None
        else:
            assert isinstance(result, EffectFailed) and result.transient == (final == TRANSIENT)


def test_a_connector_that_answers_too_few_results_is_an_error_not_a_silent_gap():
    class Short:
        def perform(self, effects):
            return []

    runtime = bare_runtime([])
    runtime.connectors = {"A": Short()}
    try:
        runtime.perform([Put("A", "k", {})])
    except RuntimeError as e:
        assert "answered 0 results for 1 effects" in str(e)
    else:
        raise AssertionError("a short answer went unnoticed")


class Unencodable:
    """A body value orjson refuses."""


effect_kinds = st.lists(st.sampled_from(["put", "bad-body", "get"]), min_size=1, max_size=10)


def mixed_effects(kinds: list[str]) -> list[Any]:
    return [Put("S", f"k{i}", {"i": i}) if kind == "put" else
            Put("S", f"k{i}", {"i": Unencodable()}) if kind == "bad-body" else
            GetItems("S", (f"k{i}",)) for i, kind in enumerate(kinds)]


@settings(max_examples=100, deadline=None)
@given(effect_kinds)
def test_refused_effects_fail_alone_in_their_own_place_in_memory(kinds):
    """An object store cannot GetItems and no store takes a body orjson cannot write: each such effect fails,
    permanently, at its position; the others are performed and answered in order."""
    store = MemoryObjectStore("x")
    results = store.perform(mixed_effects(kinds))
    assert len(results) == len(kinds)
    for i, (kind, result) in enumerate(zip(kinds, results, strict=True)):
        if kind == "put":
            assert result is None and store.get(f"k{i}") == {"i": i}
        else:
            assert isinstance(result, EffectFailed) and not result.transient
            assert ("cannot perform GetItems" if kind == "get" else "cannot be stored as JSON") in result.message
            assert store.get(f"k{i}") is None


@settings(max_examples=40, deadline=None)
@given(effect_kinds)
def test_refused_effects_fail_alone_in_their_own_place_in_sqlite(tmp_path_factory, kinds):
    store = SqliteKV(str(tmp_path_factory.mktemp("kv") / "state.db"))
    results = store.perform(mixed_effects(kinds))
    assert len(results) == len(kinds)
    for i, (kind, result) in enumerate(zip(kinds, results, strict=True)):
        if kind == "put":
            assert result is None and store.get(f"k{i}") == {"i": i}
        elif kind == "get":
            assert result == (None,)  # performed (SQLite can read), in the same call as the puts before it
        else:
            assert isinstance(result, EffectFailed) and not result.transient and store.get(f"k{i}") is None


def test_a_single_put_in_sqlite_is_committed_when_perform_returns(tmp_path):
    """The one-statement path (no BEGIN/COMMIT of its own) leaves nothing open: another connection sees it."""
    path = str(tmp_path / "state.db")
    store = SqliteKV(path)
    assert store.perform([Put("S", "tee-1", {"a": 1})]) == [None]
    other = sqlite3.connect(path)
    assert other.execute("SELECT value FROM kv WHERE key = 'tee-1'").fetchone() == (b'{"a":1}',)
    assert not store._connect().in_transaction
    # And a batch of several still runs as one transaction: a refusal inside it does not stop the others.
    assert store.perform([Put("S", "tee-2", {"b": 2}), Put("S", "tee-3", {"c": Unencodable()})])[0] is None
    assert other.execute("SELECT count(*) FROM kv").fetchone() == (2,)


def test_batches_of_one_through_the_runtime_leave_the_same_state_as_one_batch(tmp_path):
    """The per-call path and the batch path agree: sums and tee bodies, record for record, in SQLite."""
    cfg = config({"aggregator": {"name": "Sum", "stateStore": "State", "forwardState": True,
                                 "aggregation": {"key": "n", "aggregationType": "AggSum", "groupByKeys": ["g"]}}},
                 {"tee": {"name": "Out", "outputConnectorRef": "State"}},
                 externals=(external("ExternalKVStore", "State", f"sqlite:{tmp_path / 'x.db'}"),))
    records = [Record(f"r{i}", {"n": i, "g": "ab"[i % 2]}) for i in range(40)]
    states = []
    for size, db in ((1, "one.db"), (40, "all.db")):
        store = SqliteKV(str(tmp_path / db))
        registry = Registry()
        registry.register("ExternalKVStore", "sqlite", lambda ext, store=store: store)
        runtime = Runtime.build(compile_plan(cfg), registry, dedupe=False)  # marks would hold the time
        outs = [o for start in range(0, 40, size) for o in runtime.process(records[start:start + size])]
        assert all(not o.errors for o in outs)
        states.append(dict(store.scan()))
    one, batch = states
    assert one.keys() == batch.keys() and one == batch


def test_atomic_writes_from_many_threads_leave_one_whole_file_and_no_temporaries(tmp_path):
    import threading

    from handlers.connectors import files

    path = str(tmp_path / "tee.json")
    bodies = [bytes([65 + i]) * (100_000 + i) for i in range(8)]  # large enough to be written in parts
    # A temporary left by a dead process under the name this one would take next is stepped over, not reused.
    taken = tmp_path / f"{files.TMP_PREFIX}{os.getpid()}-{threading.get_ident()}-{next(files._tmp_numbers) + 1}"
    taken.write_bytes(b"stale")
    files.write_atomically(str(tmp_path / "first.json"), b"first")
    assert taken.read_bytes() == b"stale" and (tmp_path / "first.json").read_bytes() == b"first"
    taken.unlink()

    threads = [threading.Thread(target=lambda b=b: [files.write_atomically(path, b) for _ in range(20)])
               for b in bodies]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert pathlib.Path(path).read_bytes() in bodies
    assert sorted(p.name for p in tmp_path.iterdir()) == ["first.json", "tee.json"]
