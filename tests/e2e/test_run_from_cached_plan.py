"""``agglo run`` from a validated plan (the cache of plans, or the artefact beside the config), in subprocesses:
no pydantic, the same output bytes as a full validation, and every error a full validation reports."""

from __future__ import annotations

import json
import os
import pathlib
import shutil
import subprocess
import sys

from _servers import AGGLO, run_agglo, write_config
from builders import cmp, config, lit, var
from entwine_world import rsa_pem

from handlers.runtime import plan_cache

REPO = pathlib.Path(__file__).resolve().parents[2]

RUN_AND_SAY_IF_PYDANTIC = (
    "import sys\n"
    "from handlers.local import main\n"
    "status = main(sys.argv[1:])\n"
    "sys.stderr.write('pydantic loaded: %s\\n' % any(m.split('.')[0] == 'pydantic' for m in sys.modules))\n"
    "sys.exit(status)\n")


def pipeline_config() -> dict:
    """Annotate, filter, transform with a regex and sum in memory: stages of each kind a plan generates."""
    return config(
        {"annotator": {"name": "Mark", "annotations": [
            {"fieldKey": "isA", "value": "yes", "condition": cmp(var("kind"), "Equal", lit("a"))}]}},
        {"filter": {"name": "Drop", "regex": "^drop$", "keepMatched": False}},
        {"transformer": {"name": "Strip", "forwardInputFields": True, "specs": [
            {"sourceField": "word", "targetField": "stem", "transformation": {
                "transformationType": "TransformMapRegex", "mapRegexArgs": {"regex": "pre-(.*)", "replace": "$1"}}}]}},
        {"aggregator": {"name": "Sum", "stateStore": "State", "forwardState": True, "aggregation": {
            "key": "n", "aggregationType": "AggSum", "groupByKeys": ["kind"]}}},
        externals=({"name": "State", "connectionString": "mem:sums", "externalType": "ExternalKVStore"},))


def write_events(path: pathlib.Path, n: int = 40) -> pathlib.Path:
    path.write_text("".join(json.dumps({"n": i, "kind": "ab"[i % 2], "word": f"pre-{i}", "drop": i}) + "\n"
                            for i in range(n)))
    return path


def agglo_run(tmp: pathlib.Path, cache: pathlib.Path | str, *extra: str,
              cfg: str = "cfg.json") -> subprocess.CompletedProcess:
    """``agglo run`` of ``cfg`` on events.jsonl in ``tmp``, saying on stderr whether it imported pydantic."""
    return run_agglo(["run", "-c", cfg, "-i", "events.jsonl", *extra], cwd=tmp, env={"AGGLO_CACHE_DIR": str(cache)},
                     command=[sys.executable, "-c", RUN_AND_SAY_IF_PYDANTIC])


def entries(cache: pathlib.Path) -> list[pathlib.Path]:
    return sorted((cache / plan_cache.SUBDIR).glob("*.json"))


def test_a_second_run_starts_from_the_cache_without_pydantic_and_writes_the_same_bytes(tmp_path: pathlib.Path) -> None:
    write_config(tmp_path / "cfg.json", pipeline_config())
    write_events(tmp_path / "events.jsonl")
    cache = tmp_path / "cache"
    reference = agglo_run(tmp_path, cache, "--no-cache")
    assert reference.returncode == 0, reference.stderr
    assert b"pydantic loaded: True" in reference.stderr
    assert entries(cache) == []  # --no-cache writes nothing either

    first = agglo_run(tmp_path, cache)
    assert b"pydantic loaded: True" in first.stderr  # validated, then cached
    assert len(entries(cache)) == 1
    second = agglo_run(tmp_path, cache)
    assert second.returncode == 0, second.stderr
    assert b"pydantic loaded: False" in second.stderr
    assert first.stdout == second.stdout == reference.stdout
    assert len(reference.stdout.splitlines()) == 40


def test_the_artefact_beside_the_config_is_used_without_pydantic_even_with_the_cache_off(
        tmp_path: pathlib.Path) -> None:
    write_config(tmp_path / "cfg.json", pipeline_config())
    write_events(tmp_path / "events.jsonl")
    compiled = run_agglo(["compile", "-c", "cfg.json", "-o", "cfg.plan"], cwd=tmp_path)
    assert compiled.returncode == 0, compiled.stderr
    reference = agglo_run(tmp_path, "", "--no-cache")
    from_artefact = agglo_run(tmp_path, "")
    assert b"pydantic loaded: True" in reference.stderr
    assert b"pydantic loaded: False" in from_artefact.stderr
    assert from_artefact.stdout == reference.stdout
    # edited after compiling: the artefact is stale, the config validated again
    write_config(tmp_path / "cfg.json", {**pipeline_config(), "partitionUuid": "not a uuid"})
    stale = agglo_run(tmp_path, "")
    assert stale.returncode == 2
    assert b"partitionUuid" in stale.stderr


def test_a_config_edited_after_caching_is_validated_again_and_its_errors_reported(tmp_path: pathlib.Path) -> None:
    write_events(tmp_path / "events.jsonl")
    cache = tmp_path / "cache"
    write_config(tmp_path / "cfg.json", pipeline_config())
    assert agglo_run(tmp_path, cache).returncode == 0
    broken = pipeline_config()
    broken["processDefinitions"][3]["aggregator"]["stateStore"] = "Nowhere"
    broken["externalSystems"][0]["connectionString"] = "nosuch://x"
    write_config(tmp_path / "cfg.json", broken)
    with_cache = agglo_run(tmp_path, cache)
    without = agglo_run(tmp_path, cache, "--no-cache")
    assert with_cache.returncode == without.returncode == 2
    assert with_cache.stderr == without.stderr
    assert b"Nowhere" in with_cache.stderr and b"nosuch" in with_cache.stderr
    assert len(entries(cache)) == 1  # nothing cached for a config that does not validate


def test_a_private_key_gone_after_caching_stops_the_start_as_without_a_cache(tmp_path: pathlib.Path) -> None:
    shutil.copy(REPO / "pipelines" / "entwine-a.json", tmp_path / "cfg.json")
    write_events(tmp_path / "events.jsonl", 3)
    (tmp_path / "out").mkdir()
    key = tmp_path / "out" / "a.pem"
    key.write_bytes(rsa_pem())
    cache = tmp_path / "cache"
    started = agglo_run(tmp_path, cache)
    assert started.returncode == 1 and b"ticker" in started.stderr  # it started; no ticker runs here
    assert len(entries(cache)) == 1
    for damage in (lambda: key.unlink(), lambda: key.write_bytes(b"not a key")):
        damage()
        with_cache = agglo_run(tmp_path, cache)
        without = agglo_run(tmp_path, cache, "--no-cache")
        assert with_cache.returncode == without.returncode == 2
        assert with_cache.stderr == without.stderr
        assert b"pemPath" in with_cache.stderr or b"a.pem" in with_cache.stderr


def test_a_cache_that_cannot_be_used_is_a_slower_start_not_a_failure(tmp_path: pathlib.Path) -> None:
    write_config(tmp_path / "cfg.json", pipeline_config())
    write_events(tmp_path / "events.jsonl")
    reference = agglo_run(tmp_path, "", "--no-cache").stdout
    a_file = tmp_path / "a-file"
    a_file.write_text("not a directory")
    shared = tmp_path / "shared"
    (shared / plan_cache.SUBDIR).mkdir(parents=True)
    os.chmod(shared / plan_cache.SUBDIR, 0o777)  # others may write it: their entries must not run here
    for cache in (a_file, shared):
        for _ in range(2):
            done = agglo_run(tmp_path, cache)
            assert done.returncode == 0, done.stderr
            assert done.stdout == reference
            assert b"pydantic loaded: True" in done.stderr
    assert entries(shared) == []


def test_corrupt_entries_are_validated_over_and_rewritten(tmp_path: pathlib.Path) -> None:
    write_config(tmp_path / "cfg.json", pipeline_config())
    write_events(tmp_path / "events.jsonl")
    cache = tmp_path / "cache"
    reference = agglo_run(tmp_path, cache).stdout
    [entry] = entries(cache)
    good = entry.read_bytes()
    for damaged in (good[:-40], good.replace(b"Strip", b"Strap"), b"", good[:20]):
        entry.write_bytes(damaged)
        done = agglo_run(tmp_path, cache)
        assert done.returncode == 0, done.stderr
        assert done.stdout == reference
        assert b"pydantic loaded: True" in done.stderr
        assert entry.read_bytes() == good


def test_concurrent_runs_share_a_cold_cache(tmp_path: pathlib.Path) -> None:
    write_events(tmp_path / "events.jsonl")
    configs = []
    for i in range(3):
        cfg = pipeline_config()
        cfg["pipelines"][0]["name"] = f"P{i}"
        write_config(tmp_path / f"cfg{i}.json", cfg)
        configs.append(f"cfg{i}.json")
    cache = tmp_path / "cache"
    env = {**os.environ, "AGGLO_CACHE_DIR": str(cache)}
    children = [subprocess.Popen([*AGGLO, "run", "-c", configs[i % 3], "-i", "events.jsonl"], cwd=tmp_path, env=env,
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE) for i in range(9)]
    results = [child.communicate(timeout=120) for child in children]
    assert [child.returncode for child in children] == [0] * 9, [err for _, err in results]
    for i, (out, _) in enumerate(results):
        assert out == results[i % 3][0]
    assert len(entries(cache)) == 3
    assert not list((cache / plan_cache.SUBDIR).glob(".tmp-*"))
    for i, name in enumerate(configs):
        warm = agglo_run(tmp_path, cache, cfg=name)
        assert b"pydantic loaded: False" in warm.stderr
        assert warm.stdout == results[i][0]
