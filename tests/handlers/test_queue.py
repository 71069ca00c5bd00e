"""The durable queue: a crash between processing and acknowledging replays the events, counted once."""

from __future__ import annotations

import json
import sqlite3
import threading

from builders import config, external, kv

from agglo_core import compile_plan
from handlers.connectors import default_registry
from handlers.daemons.queue import DurableQueue
from handlers.runtime.driver import Runtime


def counting_runtime(tmp_path, dedupe: bool = True) -> Runtime:
    cfg = config({"aggregator": {"name": "Count", "stateStore": "State", "forwardState": True,
                                 "aggregation": {"key": "n", "aggregationType": "AggCount"}}},
                 {"tee": {"name": "Keep", "outputConnectorRef": "Dir"}},
                 externals=(kv(cs=f"sqlite:{tmp_path}/state.db"), external("ExternalLocalFile", "Dir",
                                                                             str(tmp_path / "tee"))))
    return Runtime.build(compile_plan(cfg), default_registry(), dedupe=dedupe)


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


def wait_until(predicate, timeout_s: float = 20) -> None:
    stop = threading.Event()
    for _ in range(int(timeout_s / 0.02)):
        if predicate():
            return
        stop.wait(0.02)
    raise AssertionError("timed out waiting")


def test_the_queue_is_bounded(tmp_path):
    import pytest

    from handlers.daemons.queue import QueueFull

    runtime = counting_runtime(tmp_path)
    queue = DurableQueue(str(tmp_path / "q"), max_events=3)
    queue.put_many([(f"http:{i}", json.dumps({"n": i}).encode()) for i in range(2)])
    with pytest.raises(QueueFull, match="bound is 3"):
        queue.put_many([(f"http:x{i}", b'{"n": 0}') for i in range(2)])  # all or nothing
    assert queue.counts()["unprocessed"] == 2
    queue.put("http:2", b'{"n": 2}')
    with pytest.raises(QueueFull):
        queue.put("http:3", b'{"n": 3}')
    assert queue.work_once(runtime)  # processed events leave room
    queue.put("http:3", b'{"n": 3}')
    queue.close()


def test_an_idempotency_key_queues_once_and_refuses_another_body_across_restarts(tmp_path):
    import pytest

    from handlers.sources.posted import KeyConflict

    now = [1000.0]
    queue = DurableQueue(str(tmp_path / "q"), clock=lambda: now[0])
    ids = queue.put_many([("http:k#1", b'{"n": 1}'), ("http:k#2", b'{"n": 2}')], "k", "print-a")
    assert queue.put_many([("http:k#1", b'{"n": 1}'), ("http:k#2", b'{"n": 2}')], "k", "print-a") == ids
    assert queue.counts()["unprocessed"] == 2
    queue.close()
    queue = DurableQueue(str(tmp_path / "q"), clock=lambda: now[0])  # remembered on disk
    with pytest.raises(KeyConflict, match="'k'"):
        queue.put_many([("http:k", b'{"n": 3}')], "k", "print-b")
    now[0] += 25 * 3600  # a day later the key is forgotten: it is new data
    assert queue.put_many([("http:k", b'{"n": 3}')], "k", "print-b") != ids
    assert queue.counts()["unprocessed"] == 3
    queue.close()


def test_failed_records_are_listed_and_replayed(tmp_path, monkeypatch):
    from handlers.daemons import queue as queue_module

    monkeypatch.setattr(queue_module, "MAX_ATTEMPTS", 1)  # an outage long enough to park them at once
    runtime = counting_runtime(tmp_path)
    flaky = runtime.connectors["State"] = Flaky(runtime.connectors["State"])
    queue = DurableQueue(str(tmp_path / "q"))
    for i in range(3):
        queue.put(f"http:{i}", json.dumps({"n": i}).encode())
    assert queue.work_once(runtime)
    [listed, *_] = listed_all = queue.failed_records()
    assert [f["record"] for f in listed_all] == ["http:0", "http:1", "http:2"]
    assert listed["event"] == {"n": 0} and listed["errors"][0]["transient"] is True
    flaky.down = False
    assert queue.replay_failed([listed["id"]]) == 1
    assert queue.work_once(runtime)
    assert queue.counts() == {"inflight": 0, "unprocessed": 0, "failed": 2}
    assert queue.replay_failed() == 2
    assert queue.work_once(runtime)
    assert queue.counts() == {"inflight": 0, "unprocessed": 0, "failed": 0}
    runtime.connectors["State"] = flaky.inner
    assert count(runtime) == 3
    queue.close()


def hold_exclusive(path) -> sqlite3.Connection:
    """Another process's writer holding the queue file: every other writer gets 'database is locked'."""
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    conn.execute("BEGIN EXCLUSIVE")
    return conn


def test_workers_back_off_through_a_locked_database_report_it_and_carry_on(tmp_path):
    runtime = counting_runtime(tmp_path)
    queue = DurableQueue(str(tmp_path / "q"), busy_timeout_s=0.05)
    for i in range(5):
        queue.put(f"http:{i}", json.dumps({"n": i}).encode())
    blocker = hold_exclusive(queue.path)
    stop = threading.Event()
    workers = [threading.Thread(target=queue.work, args=(runtime, stop), name=f"w{i}") for i in range(2)]
    for w in workers:
        w.start()
    try:
        wait_until(lambda: queue.health() is not None)
        assert "locked" in queue.health()
        stop.wait(0.5)
        assert all(w.is_alive() for w in workers)
        blocker.execute("COMMIT")
        wait_until(lambda: queue.health() is None and queue.counts() == {"inflight": 0, "unprocessed": 0,
                                                                          "failed": 0})
    finally:
        stop.set()
        for w in workers:
            w.join(10)
        blocker.close()
    assert count(runtime) == 5
    queue.close()


def test_a_batch_whose_acknowledgement_fails_is_settled_later_never_left_in_flight(tmp_path):
    runtime = counting_runtime(tmp_path)
    queue = DurableQueue(str(tmp_path / "q"), busy_timeout_s=0.05)
    blockers = []

    class LockAfterProcessing:
        """Runs the batch, then another writer takes the file before the worker can acknowledge it."""

        def process(self, records, *args):
            outcomes = runtime.process(records, *args)
            if not blockers:
                blockers.append(hold_exclusive(queue.path))
                threading.Timer(0.5, lambda: blockers[0].execute("COMMIT")).start()
            return outcomes

        def settle(self, *args):
            return runtime.settle(*args)

    for i in range(4):
        queue.put(f"http:{i}", json.dumps({"n": i}).encode())
    stop = threading.Event()
    worker = threading.Thread(target=queue.work, args=(LockAfterProcessing(), stop))
    worker.start()
    try:
        wait_until(lambda: queue.health() is not None)
        wait_until(lambda: queue.health() is None and queue.counts()["inflight"] == 0)
    finally:
        stop.set()
        worker.join(10)
        blockers[0].close()
    assert queue.counts() == {"inflight": 0, "unprocessed": 0, "failed": 0}
    assert count(runtime) == 4
    queue.close()


class PageCapped(DurableQueue):
    """A queue whose connections may hold only a few pages while ``full`` is set: SQLite's own 'disk full'."""

    full = False

    def _conn(self):
        fresh = getattr(self._local, "conn", None) is None
        conn = super()._conn()
        if fresh and self.full:
            pages = conn.execute("PRAGMA page_count").fetchone()[0]
            conn.execute(f"PRAGMA max_page_count={pages}")
        return conn


def test_a_full_disk_refuses_new_events_and_workers_carry_on_once_there_is_room(tmp_path):
    import pytest

    runtime = counting_runtime(tmp_path)
    queue = PageCapped(str(tmp_path / "q"))
    queue.put("http:0", b'{"n": 0}')
    queue.full = True
    queue._drop_conn()
    with pytest.raises(sqlite3.OperationalError, match="full"):
        queue.put_many([(f"http:big{i}", json.dumps({"n": 1, "pad": "x" * 4000}).encode()) for i in range(20)])
    queue.full = False
    queue._drop_conn()
    assert queue.counts() == {"inflight": 0, "unprocessed": 1, "failed": 0}  # nothing half-queued
    assert queue.work_once(runtime) and count(runtime) == 1
    queue.close()


def test_a_worker_survives_a_fault_of_its_own_and_leaves_nothing_in_flight(tmp_path):
    runtime = counting_runtime(tmp_path)
    faults = [RuntimeError("settling broke")]

    class BrokenOnce:
        def process(self, records, *args):
            return runtime.process(records, *args)

        def settle(self, *args):
            if faults:
                raise faults.pop()
            return runtime.settle(*args)

    queue = DurableQueue(str(tmp_path / "q"), backoff_s=0)
    for i in range(3):
        queue.put(f"http:{i}", json.dumps({"n": i}).encode())
    assert queue.work_once(BrokenOnce())
    assert queue.counts() == {"inflight": 0, "unprocessed": 3, "failed": 0}  # back in the queue, not lost
    assert queue.work_once(BrokenOnce())
    assert queue.counts() == {"inflight": 0, "unprocessed": 0, "failed": 0}
    assert count(runtime) == 3  # processed twice, counted once
    queue.close()


def test_health_names_workers_that_are_gone(tmp_path):
    queue = DurableQueue(str(tmp_path / "q"))
    assert queue.health() is None
    queue.start_workers(None, 0)
    dead = threading.Thread(target=lambda: None)
    dead.start()
    dead.join()
    queue._workers.append(dead)
    assert queue.health() == "no queue worker is running"
    queue.close()
