"""The cache of validated plans (``handlers.runtime.plan_cache``) and ``local_plan`` over it, in process:
damaged entries are never used, the cache is bounded, keyed by agglo's code, safe to share between threads."""

from __future__ import annotations

import json
import os
import pathlib
import threading

import pytest
from builders import config
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from handlers.runtime import plan_cache
from handlers.runtime.boot import local_plan


def config_bytes(name: str = "P") -> bytes:
    return json.dumps(config(
        {"annotator": {"name": "Mark", "annotations": [{"fieldKey": "seen", "value": "yes"}]}},
        {"aggregator": {"name": "Sum", "stateStore": "State", "aggregation": {
            "key": "n", "aggregationType": "AggSum", "groupByKeys": []}}},
        externals=({"name": "State", "connectionString": "mem:s", "externalType": "ExternalKVStore"},),
        pipeline=name)).encode()


@pytest.fixture
def cached(tmp_path: pathlib.Path) -> tuple[pathlib.Path, bytes, bytes]:
    """(cache directory, config bytes, the entry a validation wrote for them)."""
    directory = tmp_path / "plans"
    raw = config_bytes()
    plan = local_plan(str(tmp_path / "cfg.json"), raw, True, str(directory))
    assert plan.config is not None
    entry = pathlib.Path(plan_cache.entry_path(str(directory), raw))
    return directory, raw, entry.read_bytes()


def ir_data(raw: bytes, directory: pathlib.Path) -> object:
    artefact = plan_cache.load(raw, str(directory))
    assert artefact is not None
    return artefact.ir.to_data()


def test_an_entry_is_the_validated_plan(cached: tuple[pathlib.Path, bytes, bytes], tmp_path: pathlib.Path) -> None:
    directory, raw, _ = cached
    from_cache = local_plan(str(tmp_path / "cfg.json"), raw, True, str(directory))
    assert from_cache.config is None  # not validated: built from the entry
    assert from_cache.ir.to_data() == local_plan("cfg.json", raw, False, None).ir.to_data()
    assert plan_cache.load(config_bytes("Other"), str(directory)) is None


mutations = st.one_of(
    st.tuples(st.just("flip"), st.integers(min_value=0), st.integers(min_value=1, max_value=255)),
    st.tuples(st.just("cut"), st.integers(min_value=0), st.just(0)),
    st.tuples(st.just("insert"), st.integers(min_value=0), st.integers(min_value=0, max_value=255)),
    st.tuples(st.just("replace"), st.binary(max_size=300), st.just(0)),
)


def damage(entry: bytes, mutation: tuple[str, object, int]) -> bytes:
    kind, where, value = mutation
    if kind == "replace":
        assert isinstance(where, bytes)
        return where
    assert isinstance(where, int)
    at = where % (len(entry) + 1)
    if kind == "flip":
        at = where % len(entry)
        return entry[:at] + bytes([entry[at] ^ value]) + entry[at + 1:]
    if kind == "cut":
        return entry[:at]
    return entry[:at] + bytes([value]) + entry[at:]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(mutation=mutations)
def test_a_damaged_entry_is_never_used_and_validation_rewrites_it(
        cached: tuple[pathlib.Path, bytes, bytes], tmp_path: pathlib.Path, mutation: tuple[str, object, int]) -> None:
    directory, raw, good = cached
    entry = pathlib.Path(plan_cache.entry_path(str(directory), raw))
    damaged = damage(good, mutation)
    entry.write_bytes(damaged)
    if damaged != good:
        assert plan_cache.load(raw, str(directory)) is None
    plan = local_plan(str(tmp_path / "cfg.json"), raw, True, str(directory))
    assert plan.ir.to_data() == json.loads(good.split(b"\n", 1)[1])["ir"]
    assert entry.read_bytes() == good


def test_an_entry_signed_but_not_for_this_agglo_is_not_used(cached: tuple[pathlib.Path, bytes, bytes]) -> None:
    directory, raw, good = cached
    data = json.loads(good.split(b"\n", 1)[1])
    data["ir"]["version"] = -1
    for body in (json.dumps(data).encode(), b"[]", b'{"configSha256": 1}', b"\xff"):
        entry = plan_cache.MAGIC + plan_cache.hashlib.sha256(body).hexdigest().encode() + b"\n" + body
        pathlib.Path(plan_cache.entry_path(str(directory), raw)).write_bytes(entry)
        assert plan_cache.load(raw, str(directory)) is None


def test_entries_are_keyed_by_agglos_code(cached: tuple[pathlib.Path, bytes, bytes],
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    directory, raw, _ = cached
    assert plan_cache.load(raw, str(directory)) is not None
    monkeypatch.setattr(plan_cache, "_code_stamp", "another agglo")
    assert plan_cache.load(raw, str(directory)) is None


def test_the_code_stamp_follows_every_source_file(tmp_path: pathlib.Path) -> None:
    (tmp_path / "pkg" / "sub").mkdir(parents=True)
    module = tmp_path / "pkg" / "sub" / "m.py"
    module.write_text("x = 1\n")
    (tmp_path / "pkg" / "notes.txt").write_text("not code")
    roots = [str(tmp_path / "pkg")]
    stamp = plan_cache.stamp_of(roots)
    assert len(stamp) == 64 and stamp == plan_cache.stamp_of(roots)
    (tmp_path / "pkg" / "notes.txt").write_text("still not code")
    assert plan_cache.stamp_of(roots) == stamp
    before = os.stat(module)
    os.utime(module, ns=(before.st_atime_ns, before.st_mtime_ns + 1))
    touched = plan_cache.stamp_of(roots)
    assert touched != stamp
    module.write_text("x = 22\n")
    os.utime(module, ns=(before.st_atime_ns, before.st_mtime_ns + 1))
    assert plan_cache.stamp_of(roots) not in (stamp, touched)
    (tmp_path / "pkg" / "new.py").write_text("")
    assert plan_cache.stamp_of(roots) != touched
    assert plan_cache.code_stamp() == plan_cache.code_stamp()
    assert plan_cache.stamp_of(roots, ["pydantic"]) not in (plan_cache.stamp_of(roots), plan_cache.stamp_of(
        roots, ["no_such_package_here"]))


def test_the_cache_keeps_the_most_recently_used_entries(tmp_path: pathlib.Path) -> None:
    directory = str(tmp_path / "plans")
    raws = [config_bytes(f"P{i}") for i in range(8)]
    for i, raw in enumerate(raws):
        plan_cache.store(raw, b"{}", directory)
        os.utime(plan_cache.entry_path(directory, raw), ns=(i * 10**9, i * 10**9))
    os.utime(plan_cache.entry_path(directory, raws[0]))  # just used
    plan_cache.prune(directory, keep=3)
    kept = sorted(os.listdir(directory))
    assert kept == sorted(os.path.basename(plan_cache.entry_path(directory, r)) for r in (raws[0], raws[6], raws[7]))


def test_the_cache_is_bounded_as_it_is_written(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(plan_cache, "MAX_ENTRIES", 5)
    directory = str(tmp_path / "plans")
    for i in range(12):
        plan_cache.store(config_bytes(f"P{i}"), b"{}", directory)
    assert len(os.listdir(directory)) == 5


def test_where_the_cache_is(monkeypatch: pytest.MonkeyPatch) -> None:
    assert plan_cache.cache_dir({"AGGLO_CACHE_DIR": "/c", "XDG_CACHE_HOME": "/x"}) == "/c/plans"
    assert plan_cache.cache_dir({"AGGLO_CACHE_DIR": "", "XDG_CACHE_HOME": "/x"}) is None
    assert plan_cache.cache_dir({"XDG_CACHE_HOME": "/x"}) == "/x/agglo/plans"
    monkeypatch.setenv("HOME", "/home/someone")
    assert plan_cache.cache_dir({}) == "/home/someone/.cache/agglo/plans"


def test_entries_are_private(cached: tuple[pathlib.Path, bytes, bytes]) -> None:
    directory, raw, _ = cached
    assert os.stat(directory).st_mode & 0o777 == 0o700
    assert os.stat(plan_cache.entry_path(str(directory), raw)).st_mode & 0o777 == 0o600
    os.chmod(directory, 0o770)  # a group may write it: not this user's alone
    assert plan_cache.load(raw, str(directory)) is None


def test_threads_storing_and_loading_one_entry_see_it_whole_or_not_at_all(tmp_path: pathlib.Path) -> None:
    directory = str(tmp_path / "plans")
    raw = config_bytes()
    entry = local_plan(str(tmp_path / "cfg.json"), raw, True, directory)
    expected = entry.ir.to_data()
    body = pathlib.Path(plan_cache.entry_path(directory, raw)).read_bytes().split(b"\n", 1)[1]
    seen: list[object] = []
    problems: list[BaseException] = []

    def churn() -> None:
        try:
            for _ in range(60):
                plan_cache.store(raw, body, directory)
                artefact = plan_cache.load(raw, directory)
                seen.append(None if artefact is None else artefact.ir.to_data())
        except BaseException as e:  # noqa: BLE001 - reported below
            problems.append(e)

    threads = [threading.Thread(target=churn) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not problems
    assert seen and all(s == expected for s in seen)  # written before it is read: never missing, never torn
    assert os.listdir(directory) == [os.path.basename(plan_cache.entry_path(directory, raw))]
