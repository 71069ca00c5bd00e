"""Connectors that run anywhere, against real SQLite files, directories, processes and HTTP."""

from __future__ import annotations

import json
import multiprocessing
import os
import pathlib
import sqlite3
import uuid

import pytest

from agglo_core import ApplyDeltas, DeltasApplied, EffectFailed, JoinAdd, JoinState, Put, load_config
from agglo_core.config import External
from agglo_core.effects import JOIN_PREFIX
from agglo_core.state import combine_deltas
from handlers.connectors import UnknownConnector, default_registry, memory
from handlers.connectors.files import DirectoryStore
from handlers.connectors.sqlite import SqliteKV


def ext(kind: str, cs: str, name: str = "X") -> External:
    return External.model_validate({"externalType": kind, "name": name, "connectionString": cs})


KV_BACKENDS = ["mem", "sqlite", "redis", "dynamo", "firestore"]


def kv_connection_string(backend: str, request, tmp_path, join_ttl: str = "") -> str:
    """The connection string of a fresh store of ``backend`` (its server started), with ``joinTtl`` if given."""
    query, option = (f"?joinTtl={join_ttl}", f",joinTtl={join_ttl}") if join_ttl else ("", "")
    if backend == "mem":
        return f"mem:t{query}"
    if backend == "sqlite":
        return f"sqlite:{tmp_path}/sub/state.db{query}"
    if backend == "redis":
        return request.getfixturevalue("redis_kv_url") + query
    if backend == "firestore":
        request.getfixturevalue("monkeypatch").setenv("FIRESTORE_EMULATOR_HOST",
                                                      request.getfixturevalue("firestore_emulator"))
        return f"firestore:project=agglo-test,collection=state-{uuid.uuid4().hex[:8]}{option}"
    request.getfixturevalue("aws")
    from handlers.connectors.aws import client

    client("dynamodb").create_table(TableName="state", KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
                                    AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
                                    BillingMode="PAY_PER_REQUEST")
    return f"dynamo:tableName=state{option}"


def kv_store(backend: str, request, tmp_path, join_ttl: str = ""):
    return default_registry().build(ext("ExternalKVStore", kv_connection_string(backend, request, tmp_path,
                                                                                   join_ttl)))


@pytest.fixture(params=KV_BACKENDS)
def kv(request, tmp_path):
    """Every key-value connector must pass the same contract."""
    return kv_store(request.param, request, tmp_path)


def befores(answers: list) -> list[dict]:
    assert all(isinstance(a, DeltasApplied) and not a.duplicates for a in answers)
    return [a.before for a in answers]


def test_kv_applies_deltas_and_returns_the_item_before(kv):
    add = {"value": ("add", 2), "n": ("add", 1)}
    assert befores(kv.perform([ApplyDeltas("s", "k", add)])) == [{}]
    assert befores(kv.perform([ApplyDeltas("s", "k", add), ApplyDeltas("s", "k", {"value": ("add", -5)})])) == [
        {"value": 2, "n": 1}, {"value": 4, "n": 2}]
    assert befores(kv.perform([ApplyDeltas("s", "m", {"v": ("max", -3)}), ApplyDeltas("s", "m", {"v": ("max", -7)}),
                               ApplyDeltas("s", "m", {"v": ("min", -9)})])) == [{}, {"v": -3}, {"v": -3}]
    assert kv.get("k") == {"value": -1, "n": 2} and kv.get("m") == {"v": -9}


def marked(key: str, *parts: tuple[str, dict]) -> ApplyDeltas:
    total: dict = {}
    for _, deltas in parts:
        combine_deltas(total, deltas)
    return ApplyDeltas("s", key, total, marks=tuple(parts))


def test_kv_applies_each_marked_part_once(kv):
    one, two, three = ("r1", {"v": ("add", 1), "top": ("max", 5)}), ("r2", {"v": ("add", 10), "top": ("max", 7)}), \
        ("r3", {"v": ("add", 100), "top": ("max", 6)})
    [first] = kv.perform([marked("k", one, two)])
    assert first == DeltasApplied({}, frozenset())
    [again] = kv.perform([marked("k", two, three)])  # r2 is redelivered beside a new r3
    assert again == DeltasApplied({"v": 11, "top": 7}, frozenset({"r2"}))
    assert again.remembered == {"r2": {"v": 11, "top": 7}}  # what r2 wrote, as it was right after r2
    [same] = kv.perform([marked("k", one, two, three)])
    assert same == DeltasApplied({"v": 111, "top": 7}, frozenset({"r1", "r2", "r3"}))
    assert same.remembered == {"r1": {"v": 1, "top": 5}, "r2": {"v": 11, "top": 7}, "r3": {"v": 111, "top": 7}}
    assert kv.get("k") == {"v": 111, "top": 7}


def test_kv_float_sums_are_the_ones_python_computes(kv):
    parts = [(f"f{i}", {"v": ("add", x)}) for i, x in enumerate((0.1, 0.2, 2.5, 2.5, 1e-9))]
    kv.perform([marked("f", *parts[:2]), marked("i", ("i1", {"v": ("add", 2)}), ("i2", {"v": ("add", 3)}))])
    kv.perform([marked("f", *parts[2:])])
    [answer] = kv.perform([marked("f", *parts)])
    total = 0.0
    for mark, deltas in parts:
        total = deltas["v"][1] if mark == "f0" else total + deltas["v"][1]
        got = answer.remembered[mark]["v"]
        assert (got, type(got)) == (total, float)
    assert kv.get("f") == {"v": total} and kv.get("i") == {"v": 5} and type(kv.get("i")["v"]) is int


def test_unmarked_and_marked_changes_mix(kv):
    kv.perform([ApplyDeltas("s", "k", {"v": ("add", 1)})])
    kv.perform([marked("k", ("r1", {"v": ("add", 2)}))])
    kv.perform([ApplyDeltas("s", "k", {"v": ("add", 4)})])
    kv.perform([marked("k", ("r1", {"v": ("add", 2)})), ApplyDeltas("s", "k", {"v": ("add", 8)})])
    assert kv.get("k") == {"v": 15}


def join(member: str, deadline: int = 100, now: int = 50, mark: str = "", required=("a", "b")) -> JoinAdd:
    return JoinAdd("s", "j", member, deadline, required=tuple(required), now_ms=now, mark=mark)


def test_kv_joins_add_and_close_in_one_step(kv):
    [a] = kv.perform([join("a", 100)])
    [a2, b] = kv.perform([join("a", 999), join("b", 999)])
    assert a == a2 == JoinState(frozenset({"a"}), 100)  # the first deadline stays
    assert b == JoinState(frozenset({"a", "b"}), 100, "complete")  # this add completed the join, and closed it
    [b2] = kv.perform([join("b", 300)])
    assert b2 == JoinState(frozenset({"b"}), 300)  # a new join
    [late] = kv.perform([join("a", 999, now=301)])
    assert late == JoinState(frozenset({"a", "b"}), 300, "timedout")
    [fresh] = kv.perform([join("a", 999, now=302)])
    assert fresh == JoinState(frozenset({"a"}), 999)
    [plain] = kv.perform([JoinAdd("s", "other", "x", 5)])  # nothing required: a plain set-add
    assert plain == JoinState(frozenset({"x"}), 5)


def forever(member: str, now: int = 50, mark: str = "", required=("a", "b"), key: str = "j") -> JoinAdd:
    """An add to a join without a deadline (the completer's timeoutMs <= 0)."""
    return JoinAdd("s", key, member, None, required=tuple(required), now_ms=now, mark=mark)


LATER = 10**15  # about 31,000 years after 1970, in ms: "forever" for a join


def test_kv_joins_without_a_deadline_never_time_out(kv):
    [a] = kv.perform([forever("a", mark="ra")])
    assert a == JoinState(frozenset({"a"}), None)
    [again] = kv.perform([forever("a", now=LATER, mark="ra2")])  # "forever" later: still open
    assert again == JoinState(frozenset({"a"}), None)
    [b] = kv.perform([forever("b", now=LATER + 1, mark="rb")])
    assert b == JoinState(frozenset({"a", "b"}), None, "complete")
    assert kv.perform([forever("b", now=LATER + 2, mark="rb"), forever("a", now=LATER + 2, mark="ra")]) == [
        b, a]  # redeliveries get their first answers, "no deadline" included
    # A join keeps the deadline (or none) its first add gave it, whatever later adds carry.
    [opened] = kv.perform([forever("a", key="k")])
    [late] = kv.perform([JoinAdd("s", "k", "x", 5, required=("a", "b"), now_ms=LATER)])
    assert (opened, late) == (JoinState(frozenset({"a"}), None), JoinState(frozenset({"a", "x"}), None))
    kv.perform([JoinAdd("s", "d", "a", 100, required=("a", "b"), now_ms=50)])
    [timed_out] = kv.perform([forever("b", now=101, key="d")])
    assert timed_out == JoinState(frozenset({"a", "b"}), 100, "timedout")


@pytest.mark.parametrize("backend", KV_BACKENDS)
def test_a_join_without_a_deadline_is_forgotten_join_ttl_after_its_last_add(backend, request, tmp_path):
    import time

    kv = kv_store(backend, request, tmp_path, join_ttl="2")
    j, d = JOIN_PREFIX + "j", JOIN_PREFIX + "d"  # the stores' purges look for joins by the completer's key prefix
    kv.perform([forever("a", key=j), JoinAdd("s", d, "a", LATER, required=("a", "b"), now_ms=50)])
    first = time.monotonic()
    time.sleep(1.2)
    [kept] = kv.perform([forever("x", key=j)])  # within joinTtl: the same join, and its time starts again
    time.sleep(max(0.0, first + 2.4 - time.monotonic()))
    [still] = kv.perform([forever("y", key=j)])  # past joinTtl since the first add, not since the last
    assert (kept.members, still.members) == ({"a", "x"}, {"a", "x", "y"})
    time.sleep(3.2)  # past joinTtl since the last add (DynamoDB's ttl is in whole seconds: one more)
    if backend in ("mem", "sqlite"):
        assert kv.purge_expired() == 1  # the join; the one with a deadline stays
    if backend in ("mem", "sqlite", "redis"):  # Redis forgets it itself (PEXPIRE)
        assert kv.get(j) is None and kv.get(d) is not None
    [fresh] = kv.perform([forever("b", key=j)])
    assert fresh == JoinState(frozenset({"b"}), None)  # a new join: the forgotten one cannot complete
    [done] = kv.perform([JoinAdd("s", d, "b", LATER, required=("a", "b"), now_ms=60)])
    assert done == JoinState(frozenset({"a", "b"}), LATER, "complete")  # joinTtl is for joins without a deadline


@pytest.mark.parametrize("backend", KV_BACKENDS)
def test_completer_without_timeout(backend, request, tmp_path):
    """binge's completer example (processes.md) with binge's timeoutMs -1, on every store, generated and
    interpreted: the second half arrives "forever" later and still completes the join; nothing times out."""
    from builders import NOW_MS, config, kv

    from agglo_core import Record, compile_plan

    cs = kv_connection_string(backend, request, tmp_path)
    store = default_registry().build(ext("ExternalKVStore", cs, "State"))
    definition = {"completer": {"name": "BuildDeployed", "stateStore": "State",
                                "completion": {"joinKeys": ["head", "cicdVcsHash"], "timeoutMs": -1}}}
    first = {"repo": "agglo", "head": "deadbeef", "state": "passed"}
    second = {"workflow": "agglo", "cicdVcsHash": "deadbeef", "state": "passed"}
    for codegen, value in ((True, "deadbeef"), (False, "cafe")):
        plan = compile_plan(config(definition, externals=(kv("State", cs),)), codegen=codegen)
        opened = plan.run([Record(f"r1-{value}", {**first, "head": value})], NOW_MS, store.perform)
        closed = plan.run([Record(f"r2-{value}", {**second, "cicdVcsHash": value})], LATER, store.perform)
        [(_, one)], [(_, two)] = opened[0].outputs, closed[0].outputs
        assert (one["internal:completion:BuildDeployed"], two["internal:completion:BuildDeployed"]) == (
            "triggered", "complete"), codegen
        assert two["internal:completion:state:BuildDeployed"] == {  # no deadline: none shown, not a number
            "value": value, "resolved": {"head": True, "cicdVcsHash": True}}
    assert not [k for k, _ in store.scan(JOIN_PREFIX) if "|mark|" not in k]  # completed joins are removed (Redis
    # keeps a record's mark beside its join's key)


def test_externals_naming_one_memory_store_share_its_joins_with_their_own_join_ttl():
    short = default_registry().build(ext("ExternalKVStore", "mem:shared?joinTtl=60", "Short"))
    long = default_registry().build(ext("ExternalKVStore", "mem:shared", "Long"))
    assert (short.join_ttl_s, long.join_ttl_s) == (60, 7 * 24 * 3600)
    short.perform([forever("a", key=JOIN_PREFIX + "j")])
    [both] = long.perform([forever("b", key=JOIN_PREFIX + "j", required=("a", "b", "c"))])
    assert both.members == {"a", "b"} and memory.store("kv", "shared").get(JOIN_PREFIX + "j") is not None


@pytest.mark.parametrize("cs", ["mem:t?joinTtl=0", "sqlite:s.db?joinTtl=soon", "redis://h:1/0?joinTtl=-5",
                                "dynamo:tableName=T,joinTtl=", "firestore:collection=C,joinTtl=1d"])
def test_a_join_ttl_must_be_a_positive_number_of_seconds(cs):
    from handlers.connectors.catalog import spec_for
    from handlers.connectors.spec import scheme_of

    [problem] = spec_for("ExternalKVStore", scheme_of(cs)).problems(cs)
    assert problem.startswith("joinTtl must be a positive number of seconds"), problem


def test_redis_sets_an_expiry_only_on_joins_without_a_deadline(request, tmp_path):
    import redis

    kv = kv_store("redis", request, tmp_path, join_ttl="90")
    kv.perform([forever("a"), JoinAdd("s", "d", "a", LATER, required=("a", "b"), now_ms=50)])
    client = redis.Redis.from_url(request.getfixturevalue("redis_kv_url"))
    assert 85_000 < client.pttl("j") <= 90_000 and client.pttl("d") == -1  # -1: no expiry
    assert kv.get("j") == {"deadline": None, "m:a": 1}


def test_kv_joins_answer_a_redelivered_mark_as_before(kv):
    kv.perform([join("a", mark="ra")])
    [done] = kv.perform([join("b", mark="rb")])
    assert done.closed == "complete"
    assert kv.perform([join("b", mark="rb"), join("a", mark="ra")]) == [
        done, JoinState(frozenset({"a"}), 100)]  # answered as the first time; nothing added
    [other] = kv.perform([join("b", deadline=500, mark="rb2")])
    assert other == JoinState(frozenset({"b"}), 500)  # a new record opens a new join
    [late] = kv.perform([join("a", now=600, mark="ra2"), ])
    assert late == JoinState(frozenset({"a", "b"}), 500, "timedout")
    assert kv.perform([join("a", now=601, mark="ra2")]) == [late]


def test_dynamo_answers_with_the_item_its_change_was_applied_to(aws):
    """A marked change that lost a race retries on the new item: its answer is that item, not the first read."""
    from handlers.connectors.aws import client

    client("dynamodb").create_table(TableName="state", KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
                                    AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
                                    BillingMode="PAY_PER_REQUEST")
    store, other = (default_registry().build(ext("ExternalKVStore", "dynamo:tableName=state")) for _ in range(2))
    read = store._get
    raced = []

    def get(key: str) -> dict:
        item = read(key)
        if not raced:  # another instance writes between this read and the transaction
            raced.append(other.perform([ApplyDeltas("s", key, {"v": ("add", 10)})]))
        return item

    store._get = get
    [answer] = store.perform([marked("k", ("r1", {"v": ("add", 1)}))])
    assert answer == DeltasApplied({"v": 10}) and store.get("k") == {"v": 11}


def test_two_instances_completing_one_join_at_once_close_it_once(kv):
    """For each join, two instances add the last member at the same moment (two records): one completes it."""
    import threading

    joins = 2 if "Firestore" in type(kv).__name__ else 12  # the emulator resolves contention slowly
    kv.perform([JoinAdd("s", f"j{j}", "a", 100, required=("a", "b"), now_ms=50, mark=f"a{j}") for j in range(joins)])
    start = threading.Barrier(2)
    answers: list[list] = [[], []]

    def instance(n: int) -> None:
        for j in range(joins):
            start.wait(10)
            add = JoinAdd("s", f"j{j}", "b", 200, required=("a", "b"), now_ms=60, mark=f"b{j}-{n}")
            # A store that gives up on contention says so as a transient failure: the record is retried, as
            # the runtime would (the mark makes a retry change nothing twice).
            for _ in range(20):
                [answer] = kv.perform([add])
                if not (isinstance(answer, EffectFailed) and answer.transient):
                    break
            answers[n].append(answer)

    threads = [threading.Thread(target=instance, args=(n,)) for n in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not any(t.is_alive() for t in threads) and [len(a) for a in answers] == [joins, joins], answers
    for j in range(joins):
        pair = sorted((answers[0][j], answers[1][j]), key=lambda s: s.closed)
        assert [s.closed for s in pair] == ["", "complete"], pair
        assert pair[1] == JoinState(frozenset({"a", "b"}), 100, "complete")
        assert pair[0] == JoinState(frozenset({"b"}), 200)  # the other one started the next join


def test_kv_puts_tee_bodies(kv):
    assert kv.perform([Put("t", "uuid-1", {"a": [1, {"b": None}]})]) == [None]
    assert kv.get("uuid-1") == {"a": [1, {"b": None}]}


def test_kv_scans_what_it_holds_by_prefix(kv):
    kv.perform([Put("t", "a/1", {"x": 1}), Put("t", "a/2", {"x": [2]}), Put("t", "b/1", {"x": 3}),
                ApplyDeltas("s", "a/3", {"v": ("add", 4)})])
    assert list(kv.scan("a/")) == [("a/1", {"x": 1}), ("a/2", {"x": [2]}), ("a/3", {"v": 4})]
    assert [key for key, _ in kv.scan()] == ["a/1", "a/2", "a/3", "b/1"] and list(kv.scan("c")) == []


def test_object_stores_scan_what_they_hold(tmp_path):
    for cs in ("mem:scanned", f"file:{tmp_path}/objects"):
        store = default_registry().build(ext("ExternalObjectStore", cs))
        store.perform([Put("t", "k2", {"n": 2}), Put("t", "k1", {"n": 1}), Put("t", "other", {})])
        assert list(store.scan("k")) == [("k1", {"n": 1}), ("k2", {"n": 2})]
        assert store.get("missing") is None


def test_mem_stores_are_shared_by_name_and_separate_by_kind():
    r = default_registry()
    one, two = r.build(ext("ExternalKVStore", "mem:a")), r.build(ext("ExternalKVStore", "mem:a"))
    other = r.build(ext("ExternalKVStore", "mem:b"))
    objects = r.build(ext("ExternalObjectStore", "mem:a"))
    one.perform([Put("x", "k", {"v": 1})])
    assert two.get("k") == {"v": 1} and other.get("k") is None and objects.get("k") is None
    [refused] = objects.perform([ApplyDeltas("x", "k", {"v": ("add", 1)})])
    assert isinstance(refused, EffectFailed) and not refused.transient and "ApplyDeltas" in refused.message
    memory.reset()
    assert r.build(ext("ExternalKVStore", "mem:a")).get("k") is None


def _hammer(connection_string: str, worker: int, n: int) -> None:
    store = default_registry().build(ext("ExternalKVStore", connection_string))
    for i in range(n):
        store.perform([ApplyDeltas("s", "total", {"value": ("add", 1), "sum": ("add", worker)}),
                       ApplyDeltas("s", "top", {"value": ("max", worker * 1000 + i)}),
                       ApplyDeltas("s", f"w{worker}", {"value": ("add", 1)})])
        if i % 10 == 0:
            store.perform([JoinAdd("s", "join", f"w{worker}", 1)])


@pytest.mark.parametrize("backend", ["sqlite", "redis"])
def test_several_processes_updating_the_same_keys_lose_nothing(backend, tmp_path, request):
    cs = f"sqlite:{tmp_path}/state.db" if backend == "sqlite" else request.getfixturevalue("redis_kv_url")
    workers, n = 8, 120
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_hammer, args=(cs, w, n)) for w in range(workers)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    store = default_registry().build(ext("ExternalKVStore", cs))
    assert store.get("total") == {"value": workers * n, "sum": n * sum(range(workers))}
    assert store.get("top") == {"value": (workers - 1) * 1000 + n - 1}
    assert all(store.get(f"w{w}") == {"value": n} for w in range(workers))
    join = store.perform([JoinAdd("s", "join", "w0", 1)])[0]
    assert join.members == frozenset(f"w{w}" for w in range(workers))
    if backend == "sqlite":
        assert sqlite3.connect(tmp_path / "state.db").execute("PRAGMA journal_mode").fetchone()[0] == "wal"


@pytest.mark.parametrize("backend", ["mem", "sqlite"])
def test_expired_marks_are_purged(backend, tmp_path, monkeypatch):
    import time

    monkeypatch.setenv("AGGLO_DEDUPE_TTL_S", "100")
    store = default_registry().build(ext("ExternalKVStore", f"mem:{tmp_path.name}" if backend == "mem" else f"sqlite:{tmp_path}/p.db"))
    store.perform([marked("k", ("r1", {"v": ("add", 1)}), ("r2", {"v": ("add", 2)})), join("a", mark="ra")])
    monkeypatch.setenv("AGGLO_DEDUPE_TTL_S", "10000")
    if backend == "sqlite":  # a store reads the variable when it is built: a new one on the same file
        store = SqliteKV(str(tmp_path / "p.db"))
    else:  # one mem:NAME per process, built already
        assert store.mark_ttl_s == 100
        store.mark_ttl_s = 10000
    store.perform([marked("k", ("r3", {"v": ("add", 4)}))])
    assert store.purge_expired(time.time()) == 0
    assert store.purge_expired(time.time() + 1000) == 3  # r1, r2 and ra; r3 is kept
    assert store.get("k") == {"v": 7} and store.get("mark/r3") is not None and store.get("mark/r1") is None
    [again] = store.perform([marked("k", ("r3", {"v": ("add", 4)}))])
    assert again.duplicates == {"r3"}


def test_sqlite_rolls_back_a_failed_batch(tmp_path):
    store = SqliteKV(str(tmp_path / "s.db"))
    store.perform([Put("t", "text", {"v": "not a number"})])
    answers = store.perform([ApplyDeltas("s", "k", {"v": ("add", 1)}), ApplyDeltas("s", "text", {"v": ("add", 1)})])
    assert all(isinstance(a, EffectFailed) for a in answers)  # the second failed, so the batch rolled back
    assert store.get("k") is None


def test_local_file_tee_writes_one_json_file_per_uuid(tmp_path):
    target = default_registry().build(ext("ExternalLocalFile", str(tmp_path / "out")))
    target.perform([Put("t", "u1", {"a": 1}), Put("t", "u2", {"b": 2}), Put("t", "u1", {"a": 3})])
    files = sorted(os.listdir(tmp_path / "out"))
    assert files == ["u1.json", "u2.json"]
    assert json.loads((tmp_path / "out" / "u1.json").read_text()) == {"a": 3}


def test_file_object_store_refuses_keys_that_escape_its_directory(tmp_path):
    store = default_registry().build(ext("ExternalObjectStore", f"file:{tmp_path}/objects"))
    assert isinstance(store, DirectoryStore)
    store.perform([Put("t", "abc", {"x": 1})])
    assert json.loads((tmp_path / "objects" / "abc").read_text()) == {"x": 1}
    for bad in ("../escape", ".hidden", "a/b"):
        [refused] = store.perform([Put("t", bad, {})])
        assert isinstance(refused, EffectFailed) and not refused.transient and "unsafe" in refused.message


def test_registry_explains_unknown_connection_strings_without_leaking_secrets():
    config = load_config({
        "partitionUuid": "c5024ca8-d601-499f-bb24-daae74357b5e",
        "externalSystems": [
            {"externalType": "ExternalKVStore", "name": "A", "connectionString": "postgres://me:s3cret@db/x"},
            {"externalType": "ExternalObjectStore", "name": "B", "connectionString": "ftp:host=x,password=pw"},
            {"externalType": "ExternalLocalFile", "name": "C", "connectionString": "/tmp/ok"},
        ]})
    with pytest.raises(UnknownConnector) as err:
        default_registry().build_all(config)
    message = str(err.value)
    assert "'A'" in message and "'B'" in message and "'C'" not in message
    assert "s3cret" not in message and "pw" not in message
    assert "sqlite" in message and "mem" in message


def test_temporaries_of_a_crashed_writer_are_cleaned_up_when_old(tmp_path):
    directory = tmp_path / "out"
    directory.mkdir()
    old, fresh = directory / ".tmp-old", directory / ".tmp-fresh"
    old.write_text("half")
    fresh.write_text("being written")
    os.utime(old, (0, 0))
    DirectoryStore(str(directory), ".json")
    assert sorted(os.listdir(directory)) == [".tmp-fresh"]


# --- many processes, overlapping deliveries ------------------------------------------------------

WORKERS = 8
SIZES = {"sqlite": (48, 3), "redis": (48, 3), "dynamo": (24, 2)}  # (records, copies of each): moto is slow


def _overlap_config(state_cs: str) -> dict:
    from builders import config, kv

    def agg(name: str, kind: str, groups: tuple[str, ...] = ()) -> dict:
        return {"aggregator": {"name": name, "stateStore": "State", "forwardState": True,
                               "aggregation": {"key": "n", "aggregationType": kind, "groupByKeys": list(groups)}}}

    return config(agg("Sum", "AggSum", ("g",)), agg("Count", "AggCount"), agg("Max", "AggMax", ("g",)),
                  {"completer": {"name": "Join", "stateStore": "State",
                                 "completion": {"joinKeys": ["a", "b"], "timeoutMs": 3_600_000}}},
                  externals=(kv("State", state_cs),))


def _overlap_record(i: int) -> dict:
    """Record i: a number, a group, and one side (a or b) of join j<i // 2>."""
    return {"n": i % 7 + 1, "g": "xy"[i % 2], "ab"[i % 2]: f"j{i // 2}"}


def _overlap_worker(state_cs: str, registry: str, worker: int, start, out: str, size: tuple[int, int]) -> None:
    """Delivers its share of the records (each record goes to COPIES workers), in its own order."""
    import random

    from agglo_core import Record, compile_plan
    from handlers.runtime.driver import Runtime

    if registry == "aws":
        from handlers.connectors import default_registry as make
    else:
        make = default_registry
    runtime = Runtime.build(compile_plan(_overlap_config(state_cs)), make())
    n_records, copies = size
    mine = [i for i in range(n_records) if any((i + c) % WORKERS == worker for c in range(copies))]
    random.Random(worker).shuffle(mine)
    start.wait(60)
    seen = []
    for b in range(0, len(mine), 8):
        batch = mine[b:b + 8]
        for i, outcome in zip(batch, runtime.process([Record(f"r{i}", _overlap_record(i)) for i in batch]),
                              strict=True):
            assert not outcome.errors, outcome.errors
            [(_, event)] = outcome.outputs
            seen.append([i, event.get("internal:completion:Join"), event["internal:aggregation:P"]["n:AggCount"]])
    with open(out, "w") as f:
        json.dump(seen, f)


@pytest.mark.parametrize("backend", ["sqlite", "redis", "dynamo"])
def test_eight_processes_delivering_overlapping_records_count_each_once(backend, tmp_path, request):
    """Every record reaches several of eight processes at once (a redelivery racing the first delivery):
    sums, counts, maxima and completions come out exactly as one delivery of each record gives them."""
    registry = "local"
    N_RECORDS, COPIES = SIZES[backend]  # noqa: N806
    if backend == "sqlite":
        cs = f"sqlite:{tmp_path}/state.db"
    elif backend == "redis":
        cs = request.getfixturevalue("redis_kv_url")
    else:
        request.getfixturevalue("aws")
        from handlers.connectors.aws import client

        client("dynamodb").create_table(
            TableName="state", KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}], BillingMode="PAY_PER_REQUEST")
        cs, registry = "dynamo:tableName=state", "aws"
    ctx = multiprocessing.get_context("spawn")
    start = ctx.Barrier(WORKERS)
    outs = [str(tmp_path / f"worker-{w}.json") for w in range(WORKERS)]
    procs = [ctx.Process(target=_overlap_worker, args=(cs, registry, w, start, outs[w], SIZES[backend]))
             for w in range(WORKERS)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(180)
        assert p.exitcode == 0
    from agglo_core import compile_plan
    from handlers.runtime.driver import Runtime

    make = default_registry
    if registry == "aws":
        from handlers.connectors import default_registry as make
    runtime = Runtime.build(compile_plan(_overlap_config(cs)), make())
    store = runtime.connectors["State"]
    records = [_overlap_record(i) for i in range(N_RECORDS)]
    prefix = "agg/c5024ca8-d601-499f-bb24-daae74357b5e/P"
    for g in "xy":
        mine = [r["n"] for r in records if r["g"] == g]
        assert store.get(f'{prefix}/Sum/n:AggSum["{g}"]') == {"value": sum(mine)}
        assert store.get(f'{prefix}/Max/n:AggMax["{g}"]') == {"value": max(mine)}
    assert store.get(f"{prefix}/Count/n:AggCount") == {"value": N_RECORDS}

    deliveries = [row for out in outs for row in json.loads(pathlib.Path(out).read_text())]
    assert len(deliveries) == N_RECORDS * COPIES
    shown: dict[int, set] = {}
    for i, status, count in deliveries:
        shown.setdefault(i, set()).add((status, count["value"]))
    # Every delivery of a record shows what its first delivery showed: one status and one count per record,
    assert all(len(v) == 1 for v in shown.values()), {i: v for i, v in shown.items() if len(v) > 1}
    # the counts shown are 1..N, each once (each record counted once, in some order),
    assert sorted(next(iter(v))[1] for v in shown.values()) == list(range(1, N_RECORDS + 1))
    # and each join completed exactly once, by one of its two records.
    completing = sorted(i // 2 for i, v in shown.items() if next(iter(v))[0] == "complete")
    assert completing == list(range(N_RECORDS // 2))
    for j in range(N_RECORDS // 2):  # no join was started again by a late copy of one of its records
        assert store.get(f"join/c5024ca8-d601-499f-bb24-daae74357b5e/P/Join/j{j}") is None


def test_a_temporary_file_that_vanishes_while_stale_ones_are_swept_is_skipped(tmp_path: pathlib.Path) -> None:
    from handlers.connectors.files import TMP_PREFIX, remove_stale_temporaries

    # A name listed but gone by the time it is looked at (another instance renamed or removed it): a dangling
    # link is exactly that, every time.
    (tmp_path / f"{TMP_PREFIX}gone").symlink_to(tmp_path / "nowhere")
    stale = tmp_path / f"{TMP_PREFIX}stale"
    stale.write_bytes(b"{}")
    os.utime(stale, (0, 0))
    assert remove_stale_temporaries(str(tmp_path)) == 1
    assert not stale.exists()


@pytest.mark.parametrize("backend", ["mem", "sqlite"])
def test_a_store_reads_the_marks_time_to_live_when_it_is_built(backend, tmp_path, monkeypatch):
    import time

    monkeypatch.setenv("AGGLO_DEDUPE_TTL_S", "50")
    store = default_registry().build(ext("ExternalKVStore", f"mem:{tmp_path.name}" if backend == "mem"
                                       else f"sqlite:{tmp_path}/t.db"))
    monkeypatch.setenv("AGGLO_DEDUPE_TTL_S", "5000")  # too late for this store
    before = time.time()
    store.perform([marked("k", ("r1", {"v": ("add", 1)})), join("a", mark="ra")])
    for mark in ("mark/r1", "mark/ra"):
        assert before + 50 <= store.get(mark)["expires"] <= time.time() + 50
