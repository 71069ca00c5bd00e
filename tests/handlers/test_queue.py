"""The durable queue: a crash between processing and acknowledging replays the events, counted once."""

from __future__ import annotations

import json
import threading

from builders import config, external, kv

from agglo_core import compile_plan
from handlers.connectors import local_registry
from handlers.daemons.queue import DurableQueue
from handlers.runtime.driver import Runtime


def counting_runtime(tmp_path, dedupe: bool = True) -> Runtime:
    cfg = config({"aggregator": {"name": "Count", "stateStore": "State", "forwardState": True,
                                 "aggregation": {"key": "n", "aggregationType": "AggCount"}}},
                 {"tee": {"name": "Keep", "outputConnectorRef": "Dir"}},
                 externals=(kv(cs=f"sqlite:{tmp_path}/state.db"), external("ExternalLocalFile", "Dir",
                                                                             str(tmp_path / "tee"))))
    return Runtime.build(compile_plan(cfg), local_registry(), dedupe=dedupe)


def count(runtime: Runtime) -> int:
    key = next(k for k in _keys(runtime) if k.startswith("agg/"))
    return runtime.connectors["State"].get(key)["value"]


def _keys(runtime: Runtime) -> list[str]:
    conn = runtime.connectors["State"]._connect()
    return [k for (k,) in conn.execute("SELECT key FROM kv")]


def crash_after_processing(tmp_path, runtime: Runtime, n: int) -> None:
    """Queue n events, claim and process them, and die before acknowledging them."""
    queue = DurableQueue(str(tmp_path / "q"))
    for i in range(n):
        queue.put(f"http:{i}", json.dumps({"n": i}).encode())
    rows = queue.claim()
    assert len(rows) == n
    from agglo_core import Record

    runtime.process([Record(rid, json.loads(body)) for _, rid, body in rows])
    assert queue.counts()["inflight"] == n
    queue.close()  # the daemon is gone; its claims stay in the queue file


def drain(tmp_path, runtime: Runtime) -> dict:
    queue = DurableQueue(str(tmp_path / "q"))  # a restart: in-flight events go back to the queue
    stop = threading.Event()
    worker = threading.Thread(target=queue.work, args=(runtime, stop))
    worker.start()
    try:
        for _ in range(100):
            if queue.counts()["unprocessed"] == 0 and queue.counts()["inflight"] == 0:
                break
            stop.wait(0.05)
    finally:
        stop.set()
        worker.join(5)
    counts = queue.counts()
    queue.close()
    return counts


def test_replayed_events_change_state_once(tmp_path):
    runtime = counting_runtime(tmp_path)
    crash_after_processing(tmp_path, runtime, 5)
    assert count(runtime) == 5
    assert drain(tmp_path, runtime) == {"inflight": 0, "unprocessed": 0, "failed": 0}
    assert count(runtime) == 5
    assert len(list((tmp_path / "tee").iterdir())) == 5  # tee files rewritten under the same names


def test_without_dedupe_a_replay_counts_again(tmp_path):
    runtime = counting_runtime(tmp_path, dedupe=False)
    crash_after_processing(tmp_path, runtime, 5)
    drain(tmp_path, runtime)
    assert count(runtime) == 10


class Flaky:
    """Wraps a connector: its calls fail while ``down`` is set."""

    def __init__(self, inner) -> None:
        self.inner, self.down = inner, True

    def perform(self, effects):
        if self.down:
            raise ConnectionError("state store unreachable")
        return self.inner.perform(effects)


def test_records_that_failed_for_an_outside_reason_are_tried_again(tmp_path):
    runtime = counting_runtime(tmp_path)
    flaky = runtime.connectors["State"] = Flaky(runtime.connectors["State"])
    now = [1000.0]
    queue = DurableQueue(str(tmp_path / "q"), backoff_s=2, clock=lambda: now[0])
    for i in range(3):
        queue.put(f"http:{i}", json.dumps({"n": i}).encode())
    queue.put("http:bad", b'{"other": 1}')  # no n: counted nowhere, still fine
    assert queue.work_once(runtime)
    assert queue.counts() == {"inflight": 0, "unprocessed": 3, "failed": 0}  # kept, not parked in 'failed'
    assert not queue.work_once(runtime)  # not before the backoff
    flaky.down = False
    now[0] += 2
    assert queue.work_once(runtime)
    assert queue.counts() == {"inflight": 0, "unprocessed": 0, "failed": 0}
    runtime.connectors["State"] = flaky.inner
    assert count(runtime) == 3
    queue.close()


def test_a_record_that_keeps_failing_is_parked_after_max_attempts(tmp_path, monkeypatch):
    from handlers.daemons import queue as queue_module

    monkeypatch.setattr(queue_module, "MAX_ATTEMPTS", 3)
    runtime = counting_runtime(tmp_path)
    runtime.connectors["State"] = Flaky(runtime.connectors["State"])
    queue = DurableQueue(str(tmp_path / "q"), backoff_s=0)
    queue.put("http:0", b'{"n": 0}')
    for _ in range(3):
        assert queue.work_once(runtime)
    assert queue.counts() == {"inflight": 0, "unprocessed": 0, "failed": 1}
    queue.close()
