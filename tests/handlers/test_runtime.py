"""The runtime against real connectors: an HTTP server on 127.0.0.1, SQLite, retries with backoff."""

from __future__ import annotations

import gzip
import io

import pytest
from builders import config, external, kv
from servers import JsonHook

from agglo_core import EffectFailed, Put, Record, compile_plan
from handlers.connectors import default_registry
from handlers.connectors.http import HttpTarget
from handlers.runtime.driver import Runtime
from handlers.sources import Unreadable
from handlers.sources.jsonfile import open_events, read_events


def failing_hook(failures: int = 0, status: int = 503, reply: bytes = b'{"ok": true}') -> JsonHook:
    """Fails its first ``failures`` requests with ``status``, then answers ``reply``."""
    return JsonHook(lambda hook, headers, body: (status, b'"try later"') if len(hook.requests) <= failures
                    else (200, reply))


@pytest.fixture
def hook_factory():
    hooks = []

    def make(**kw) -> JsonHook:
        hooks.append(failing_hook(**kw))
        return hooks[-1]

    yield make
    for h in hooks:
        h.close()


def tee_config(url: str, retries: int) -> dict:
    return config({"tee": {"name": "Send", "outputConnectorRef": "Web"}},
                  externals=(external("ExternalHttp", "Web", url),), retries=retries)


def runtime_for(cfg: dict) -> tuple[Runtime, list[float]]:
    """A runtime whose jitter always draws the top of its range, so the backoff is the plain exponential."""
    sleeps: list[float] = []
    return Runtime.build(compile_plan(cfg), default_registry(), sleep=sleeps.append, clock=lambda: 1.7e9,
                         rand=lambda: 1.0), sleeps


def test_http_tee_posts_with_idempotency_key_and_records_the_response(hook_factory):
    hook = hook_factory(reply=b'{"accepted": 1}')
    runtime, _ = runtime_for(tee_config(hook.url, 0))
    [outcome] = runtime.process([Record("r1", {"a": 1})])
    [(headers, body)] = hook.requests
    [entry] = outcome.outputs[0][1]["internal:tee:output"]
    assert headers["Idempotency-Key"] == entry["uuid"] and headers["Content-Type"] == "application/json"
    assert body["a"] == 1 and body["internal:name"] == "P"
    assert entry["response"] == {"accepted": 1} and entry["outputType"] == "web"


@pytest.mark.parametrize("reply", [b"", b"null", b"{}", b"OK"])
def test_http_tee_answered_without_a_body_has_no_response_key(hook_factory, reply):
    # binge leaves "response" out unless the answer had a (non-empty) JSON body
    hook = hook_factory(reply=reply)
    runtime, _ = runtime_for(tee_config(hook.url, 0))
    outcomes = runtime.process([Record("r1", {"a": 1}), Record("r2", {"a": 2})])
    assert len(hook.requests) == 2
    for outcome in outcomes:
        [entry] = outcome.outputs[0][1]["internal:tee:output"]
        assert set(entry) == {"uuid", "outputType", "connectionString"} and entry["outputType"] == "web"


def test_failed_effects_are_retried_with_exponential_backoff_then_succeed(hook_factory):
    hook = hook_factory(failures=2)
    runtime, sleeps = runtime_for(tee_config(hook.url, 3))
    [outcome] = runtime.process([Record("r1", {"a": 1})])
    assert outcome.errors == [] and len(hook.requests) == 3
    assert sleeps == [0.001, 0.002]
    assert len({h["Idempotency-Key"] for h, _ in hook.requests}) == 1  # retries carry the same key


def test_retries_exhausted_fail_that_record_only(hook_factory):
    hook = hook_factory(failures=100, status=500)
    runtime, sleeps = runtime_for(tee_config(hook.url, 1))
    outcomes = runtime.process([Record("r1", {"a": 1}), Record("r2", {"a": 2})])
    assert len(hook.requests) == 4 and len(sleeps) == 1
    for o in outcomes:
        [error] = o.errors
        assert (error.pipeline, error.process) == ("P", "Send") and "500" in error.message


def test_unreachable_endpoint_is_a_record_error():
    target = HttpTarget("http://127.0.0.1:9/nothing", deadline_s=2)
    [result] = target.perform([Put("Web", "k", {})])
    assert isinstance(result, EffectFailed) and "127.0.0.1:9" in result.message


def test_a_connector_that_raises_fails_its_effects_not_the_batch(tmp_path):
    cfg = config({"tee": {"name": "ToFile", "outputConnectorRef": "Dir"}},
                 {"aggregator": {"name": "Count", "stateStore": "State", "forwardState": True,
                                 "aggregation": {"key": "a", "aggregationType": "AggCount"}}},
                 externals=(external("ExternalLocalFile", "Dir", str(tmp_path / "file-not-dir")),
                            kv(cs=f"sqlite:{tmp_path}/s.db")))
    (tmp_path / "file-not-dir").mkdir()
    runtime, _ = runtime_for(cfg)
    (tmp_path / "file-not-dir").rmdir()
    (tmp_path / "file-not-dir").write_text("not a directory")
    outcomes = runtime.process([Record("r1", {"a": 1})])
    [error] = outcomes[0].errors
    assert error.process == "ToFile"


def test_state_is_combined_per_key_but_outputs_are_per_record(tmp_path):
    cfg = config({"aggregator": {"name": "Sum", "stateStore": "State", "forwardState": True,
                                 "aggregation": {"key": "n", "aggregationType": "AggSum", "groupByKeys": ["g"]}}},
                 externals=(kv(cs=f"sqlite:{tmp_path}/s.db"),))
    runtime, _ = runtime_for(cfg)
    calls = []
    connector = runtime.connectors["State"]
    original = connector.perform
    connector.perform = lambda effects: calls.append(len(effects)) or original(effects)  # type: ignore[method-assign]
    events = [{"n": i, "g": i % 3} for i in range(30)]
    outcomes = runtime.process([Record(str(i), e) for i, e in enumerate(events)])
    assert calls == [3]  # one call, one write per distinct group
    running: dict[int, int] = {}
    for e, o in zip(events, outcomes, strict=True):
        running[e["g"]] = running.get(e["g"], 0) + e["n"]
        assert o.outputs[0][1]["internal:aggregation:P"]["n:AggSum"] == {str(e["g"]): {"value": running[e["g"]]}}


@pytest.mark.parametrize(("data", "expected"), [
    (b'{"a": 1}\n\n{"b": 2}\nnot json\n[1]\n', [(1, {"a": 1}), (3, {"b": 2}), (4, Unreadable), (5, [1])]),
    (b'  [{"a": 1}, 2, {"c": 3}]', [(1, {"a": 1}), (2, 2), (3, {"c": 3})]),
    (b'{\n  "a": {\n    "b": 1\n  }\n}\n', [(1, {"a": {"b": 1}})]),
    (b'\n\n{"a": 1', [(3, Unreadable)]),
    (b'[1, 2', [(1, 1), (2, Unreadable)]),  # a truncated array: its complete elements, one error
    (b'', []),
])
def test_reading_events_in_every_format(data, expected):
    for raw in (data, gzip.compress(data)):
        got = list(read_events(open_events(io.BytesIO(raw))))
        assert [(n, Unreadable if isinstance(v, Unreadable) else v) for n, v in got] == expected


def test_the_collector_is_paused_during_a_batch_and_restored_after():
    import gc
    import threading

    from handlers.connectors import Registry

    seen: list[bool] = []

    class Probe:
        def perform(self, effects):
            seen.append(gc.isenabled())
            return [None] * len(effects)

    registry = Registry()
    registry.register("ExternalKVStore", "probe", lambda ext: Probe())
    plan = compile_plan(config({"tee": {"name": "Out", "outputConnectorRef": "P"}},
                               externals=(external("ExternalKVStore", "P", "probe:x"),)))
    runtime = Runtime.build(plan, registry)
    assert gc.isenabled()
    runtime.process([Record("a", {"n": 1})])
    assert seen == [False] and gc.isenabled()

    gc.disable()  # an application that runs without the collector keeps it off
    try:
        runtime.process([Record("b", {"n": 1})])
        assert not gc.isenabled()
    finally:
        gc.enable()

    threads = [threading.Thread(target=runtime.process, args=([Record(f"t{i}", {"n": i})],)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(seen) == 10 and not any(seen) and gc.isenabled()


FREEZE_PROBE = """
import gc, json, sys
from agglo_core import Record, compile_plan
from handlers.connectors import Registry
from handlers.connectors.memory import MemoryStore
from handlers.runtime.driver import Runtime

config = json.loads(sys.argv[1])
registry = Registry()
registry.register("ExternalKVStore", "mem", lambda ext: MemoryStore(ext.name))
before = gc.get_freeze_count()
runtime = Runtime.build(compile_plan(json.dumps(config)), registry)
frozen = gc.get_freeze_count()
Runtime.build(compile_plan(json.dumps(config)), registry)
again = gc.get_freeze_count()
for i in range(3000):
    runtime.process([Record(f"r{i}", {"n": i})])
gc.collect()
print(json.dumps([before, frozen, again, gc.get_freeze_count(), len(gc.get_objects())]))
"""


def test_the_first_runtime_built_freezes_the_init_heap_once():
    """What exists when the first runtime is built leaves the collector's sight; later runtimes and batches
    freeze nothing more, and what batches make is still collected (tracked objects stay few)."""
    import json
    import subprocess
    import sys

    cfg = config({"tee": {"name": "Out", "outputConnectorRef": "P"}},
                 externals=(external("ExternalKVStore", "P", "mem:x"),))
    out = subprocess.run([sys.executable, "-c", FREEZE_PROBE, json.dumps(cfg)], capture_output=True, text=True,
                         check=True)
    before, frozen, again, after, tracked = json.loads(out.stdout)
    assert before == 0 and frozen > 1000 and again == frozen == after
    assert tracked < 1000, tracked  # not one object per batch: the batches left nothing to the collector
