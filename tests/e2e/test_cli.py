"""The real ``agglo`` command (run, validate) in a subprocess, on real files in a temporary directory."""

from __future__ import annotations

import gzip
import json
import pathlib
import random
import shutil
import sqlite3
import stat
import subprocess
import sys
import time

import pytest
from _servers import AGGLO_SCRIPT, PARTITION, json_lines, run_agglo, write_config
from builders import BINGE, cmp, config, lit, var

REPO = pathlib.Path(__file__).resolve().parents[2]


# --- configs -----------------------------------------------------------------------


def annotator(name: str, key: str, value: str) -> dict:
    return {"annotator": {"name": name, "annotations": [{"fieldKey": key, "value": value}]}}


def two_pipelines() -> dict:
    """"First" marks every event; "Second" stops events whose kind is not "even", then marks the rest."""
    second = {"name": "Second", "processes": [{"name": "OnlyEven"}, {"name": "MarkSecond"}]}
    return config(
        annotator("MarkFirst", "seen", "first"),
        {"continuation": {"name": "OnlyEven", "condition": cmp(var("kind"), "Equal", lit("even"))}},
        annotator("MarkSecond", "second", "yes"),
        order=["MarkFirst"], pipeline="First", extra_pipelines=(second,))


def first_out(event: dict) -> dict:
    return {**event, "internal:partitionID": PARTITION, "internal:name": "First", "seen": "first"}


def second_out(event: dict) -> dict:
    return {**event, "internal:partitionID": PARTITION, "internal:name": "Second", "second": "yes"}


def expected_outputs(events: list[dict]) -> list[dict]:
    """One output per record and pipeline, in input order, pipelines in config order."""
    out = []
    for e in events:
        out.append(first_out(e))
        if e.get("kind") == "even":
            out.append(second_out(e))
    return out


def numbered(n: int) -> list[dict]:
    return [{"n": i, "kind": "even" if i % 2 == 0 else "odd"} for i in range(n)]


def jsonl(events: list) -> bytes:
    return b"".join(json.dumps(e).encode() + b"\n" for e in events)


@pytest.fixture
def two(tmp_path: pathlib.Path) -> pathlib.Path:
    return write_config(tmp_path / "two.json", two_pipelines())


def errors_of(stderr: bytes) -> list[dict]:
    return sorted(json_lines(stderr), key=lambda e: e["line"])


# --- agglo run: input formats ------------------------------------------------------------


def test_run_json_lines_file_outputs_in_input_order_and_pipeline_order(tmp_path, two):
    events = numbered(1100)  # more than one internal batch of 512
    (tmp_path / "events.jsonl").write_bytes(jsonl(events))
    proc = run_agglo(["run", "-c", str(two), "-i", "events.jsonl"], tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == b""
    assert json_lines(proc.stdout) == expected_outputs(events)
    assert len(proc.stdout.splitlines()) == 1100 + 550


def test_run_json_array(tmp_path, two):
    events = numbered(7)
    (tmp_path / "events.json").write_text(json.dumps(events))
    proc = run_agglo(["run", "-c", str(two), "-i", "events.json"], tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert json_lines(proc.stdout) == expected_outputs(events)


def test_run_one_pretty_printed_document(tmp_path, two):
    event = {"n": 1, "kind": "even", "nested": {"a": [1, 2, {"b": "c"}]}}
    (tmp_path / "event.json").write_text(json.dumps(event, indent=2) + "\n")
    proc = run_agglo(["run", "-c", str(two), "-i", "event.json"], tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert json_lines(proc.stdout) == [first_out(event), second_out(event)]


def test_run_gzipped_json_lines(tmp_path, two):
    events = numbered(30)
    (tmp_path / "events.jsonl.gz").write_bytes(gzip.compress(jsonl(events)))
    proc = run_agglo(["run", "-c", str(two), "-i", "events.jsonl.gz"], tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert json_lines(proc.stdout) == expected_outputs(events)


def test_run_gzipped_array_on_stdin(tmp_path, two):
    events = numbered(5)
    proc = run_agglo(["run", "-c", str(two), "-i", "-"], tmp_path, stdin=gzip.compress(json.dumps(events).encode()))
    assert proc.returncode == 0, proc.stderr
    assert json_lines(proc.stdout) == expected_outputs(events)


@pytest.mark.parametrize("args", [["-i", "-"], []], ids=["dash", "default"])
def test_run_stdin(tmp_path, two, args):
    events = numbered(9)
    proc = run_agglo(["run", "-c", str(two), *args], tmp_path, stdin=jsonl(events))
    assert proc.returncode == 0, proc.stderr
    assert json_lines(proc.stdout) == expected_outputs(events)


def test_run_output_file(tmp_path, two):
    events = numbered(11)
    (tmp_path / "events.jsonl").write_bytes(jsonl(events))
    proc = run_agglo(["run", "-c", str(two), "-i", "events.jsonl", "-o", "out.jsonl"], tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == b""
    text = (tmp_path / "out.jsonl").read_bytes()
    assert text.endswith(b"\n")
    assert json_lines(text) == expected_outputs(events)


def test_run_empty_input_succeeds_with_no_output(tmp_path, two):
    proc = run_agglo(["run", "-c", str(two)], tmp_path, stdin=b"\n\n")
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, b"", b"")


# --- agglo run: record errors and exit status ------------------------------------------------


def test_run_json_lines_errors_name_their_line_and_others_still_run(tmp_path, two):
    ok1, clash, ok2 = {"n": 1, "kind": "even"}, {"n": 5, "kind": "even", "seen": "x"}, {"n": 7, "kind": "odd"}
    text = "\n".join([json.dumps(ok1), "", "this is not json", "[1, 2]", json.dumps(clash), '"a string"',
                      json.dumps(ok2)]) + "\n"
    (tmp_path / "events.jsonl").write_text(text)
    proc = run_agglo(["run", "-c", str(two), "-i", "events.jsonl"], tmp_path)
    assert proc.returncode == 1
    # The clashing record fails in First only; Second still gives its output.
    assert json_lines(proc.stdout) == [first_out(ok1), second_out(ok1), second_out(clash), first_out(ok2)]
    errors = errors_of(proc.stderr)
    assert [(e["line"], e["pipeline"], e["process"]) for e in errors] == [
        (3, None, None), (4, None, None), (5, "First", "MarkFirst"), (6, None, None)]
    assert all(set(e) == {"line", "pipeline", "process", "error"} for e in errors)
    assert "not valid JSON" in errors[0]["error"]
    assert "JSON object" in errors[1]["error"] and "JSON object" in errors[3]["error"]
    assert "seen" in errors[2]["error"] and "already" in errors[2]["error"]


def test_run_array_errors_count_elements_from_one(tmp_path, two):
    events = [{"n": 1, "kind": "odd"}, 2, {"n": 3, "kind": "odd", "seen": "x"}, "s", {"n": 5, "kind": "even"}]
    (tmp_path / "events.json").write_text(json.dumps(events, indent=1))
    proc = run_agglo(["run", "-c", str(two), "-i", "events.json"], tmp_path)
    assert proc.returncode == 1
    assert json_lines(proc.stdout) == [first_out(events[0]), first_out(events[4]), second_out(events[4])]
    errors = errors_of(proc.stderr)
    assert [(e["line"], e["pipeline"], e["process"]) for e in errors] == [
        (2, None, None), (3, "First", "MarkFirst"), (4, None, None)]


def test_run_stdin_errors_count_lines_from_one(tmp_path, two):
    proc = run_agglo(["run", "-c", str(two)], tmp_path, stdin=b'{"seen": 1}\n{"n": 2}\n')
    assert proc.returncode == 1
    assert json_lines(proc.stdout) == [first_out({"n": 2})]
    assert [(e["line"], e["pipeline"], e["process"]) for e in errors_of(proc.stderr)] == [
        (1, "First", "MarkFirst")]


def test_run_line_numbers_count_leading_blank_lines_and_a_broken_first_line(tmp_path, two):
    proc = run_agglo(["run", "-c", str(two)], tmp_path, stdin=b'\n\n{"n": 1}\nbad\n\n{"seen": 2}\n')
    assert proc.returncode == 1
    assert json_lines(proc.stdout) == [first_out({"n": 1})]
    assert [(e["line"], e["pipeline"]) for e in errors_of(proc.stderr)] == [(4, None), (6, "First")]

    # A first line that looks like the start of a document but is a broken JSON line.
    proc = run_agglo(["run", "-c", str(two)], tmp_path, stdin=b'{"n": 1\n{"n": 2}\n\n{"seen": 3}\n')
    assert proc.returncode == 1
    assert json_lines(proc.stdout) == [first_out({"n": 2})]
    assert [(e["line"], e["pipeline"]) for e in errors_of(proc.stderr)] == [(1, None), (4, "First")]


def test_run_truncated_array_runs_its_complete_elements_and_is_one_error(tmp_path, two):
    proc = run_agglo(["run", "-c", str(two)], tmp_path, stdin=b'[{"n": 1}, {"n": 2}, {"n":')
    assert proc.returncode == 1
    assert json_lines(proc.stdout) == [first_out({"n": 1}), first_out({"n": 2})]
    [err] = errors_of(proc.stderr)
    assert (err["line"], err["pipeline"], err["process"]) == (3, None, None)
    assert "ends inside the JSON array, after 2 complete element(s)" in err["error"]


def test_run_pretty_printed_document_error_is_line_one(tmp_path, two):
    (tmp_path / "event.json").write_text(json.dumps({"seen": "x", "kind": "odd"}, indent=2))
    proc = run_agglo(["run", "-c", str(two), "-i", "event.json"], tmp_path)
    assert proc.returncode == 1 and proc.stdout == b""
    assert [(e["line"], e["pipeline"], e["process"]) for e in errors_of(proc.stderr)] == [
        (1, "First", "MarkFirst")]


def test_run_bad_config_exits_2_naming_each_problem_path(tmp_path):
    cfg = two_pipelines()
    cfg["partitionUuid"] = "not-a-uuid"
    cfg["pipelines"][1]["processes"].append({"name": "Ghost"})
    cfg["processDefinitions"][0]["annotator"]["bogus"] = True
    path = write_config(tmp_path / "bad.json", cfg)
    (tmp_path / "events.jsonl").write_bytes(jsonl(numbered(3)))
    proc = run_agglo(["run", "-c", "bad.json", "-i", "events.jsonl"], tmp_path)
    assert proc.returncode == 2
    assert proc.stdout == b""
    err = proc.stderr.decode()
    assert path.name in err
    assert "partitionUuid: 'not-a-uuid' is not a UUID" in err
    assert "pipelines[1].processes[2].name: no process definition named 'Ghost'" in err
    assert "processDefinitions[0].annotator.bogus: unknown field" in err


def test_run_config_that_is_not_json_exits_2(tmp_path):
    (tmp_path / "bad.json").write_text("{ nope")
    proc = run_agglo(["run", "-c", "bad.json"], tmp_path, stdin=b"{}\n")
    assert proc.returncode == 2
    assert "(root): not valid JSON" in proc.stderr.decode()


@pytest.mark.parametrize("missing", ["config", "input"])
def test_run_missing_file_exits_2(tmp_path, two, missing):
    args = ["-c", "nope.json", "-i", "-"] if missing == "config" else ["-c", str(two), "-i", "nope.jsonl"]
    proc = run_agglo(["run", *args], tmp_path, stdin=b"{}\n")
    assert proc.returncode == 2
    assert proc.stdout == b""
    assert "nope." in proc.stderr.decode() and "No such file" in proc.stderr.decode()


# --- agglo validate --------------------------------------------------------------------------


def test_validate_lists_every_problem_with_its_json_path(tmp_path):
    cfg = two_pipelines()
    cfg["partitionUuid"] = "nope"
    cfg["processDefinitions"].insert(0, {"tee": {"name": "Out", "outputConnectorRef": "Missing"}})
    cfg["processDefinitions"].append({"annotator": {"name": "Unused", "annotations": [], "bogus": 1}})
    cfg["pipelines"][0]["processes"].append({"name": "Ghost"})
    cfg["externalSystems"] = [{"externalType": "ExternalKVStore", "name": "KV", "connectionString": ""}]
    write_config(tmp_path / "bad.json", cfg)
    proc = run_agglo(["validate", "-c", "bad.json"], tmp_path)
    assert proc.returncode == 1
    lines = proc.stdout.decode().splitlines()
    assert all(line.startswith("bad.json: ") for line in lines), lines
    problems = sorted(line[len("bad.json: "):].split(":", 1)[0] for line in lines)
    assert problems == sorted([
        "partitionUuid", "processDefinitions[0].tee.outputConnectorRef", "processDefinitions[4].annotator.bogus",
        "pipelines[0].processes[1].name", "externalSystems[0].connectionString"])


def test_validate_ok_config(tmp_path, two):
    proc = run_agglo(["validate", "-c", str(two)], tmp_path)
    assert proc.returncode == 0, proc.stdout
    assert proc.stdout.decode().strip() == (
        f"{two}: ok (2 pipeline(s), 3 process definition(s), 0 external system(s))")


def test_validate_binge_fixture_configs(tmp_path):
    for name in ("basic__basic_pipeline.json", "test-basic_pipeline.json"):
        proc = run_agglo(["validate", "-c", str(BINGE / name)], tmp_path)
        assert proc.returncode == 0, proc.stdout
        assert b": ok (" in proc.stdout


def test_validate_not_json(tmp_path):
    (tmp_path / "bad.json").write_text("[1, 2]")
    proc = run_agglo(["validate", "-c", "bad.json"], tmp_path)
    assert proc.returncode == 1
    assert proc.stdout.decode().strip() == "bad.json: (root): a config must be a JSON object"


# --- executables: the allow-list, failures, timeouts -------------------------------------------


SCRIPTS = {
    "echo": """
import json, os, sys
event = json.load(sys.stdin)
open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "echo.ran"), "a").write("x")
print(json.dumps({"got": event["n"], "args": sys.argv[1:]}))
""",
    "fail": """
import sys
sys.stdin.read()
sys.stderr.write("boom: the disk is on fire\\n")
sys.exit(3)
""",
    "nonjson": """
import sys
sys.stdin.read()
sys.stderr.write("warning: about to print garbage\\n")
print("hello, not json")
""",
    "sleepy": """
import sys, time
sys.stdin.read()
time.sleep(5)
print("{}")
""",
}


def script(tmp_path: pathlib.Path, name: str) -> pathlib.Path:
    path = tmp_path / f"{name}.py"
    path.write_text("#!/usr/bin/env python3\n" + SCRIPTS[name])
    path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return path


def spawner_config(tmp_path: pathlib.Path, exe: pathlib.Path, args: tuple[str, ...] = ()) -> pathlib.Path:
    cfg = config({"spawner": {"name": "Spawn", "doSync": True,
                              "job": {"runnable": {"pathToExec": str(exe), "cmdArgs": list(args)}}}})
    return write_config(tmp_path / f"spawn-{exe.stem}.json", cfg)


def test_exec_refused_without_allow_exec(tmp_path):
    exe = script(tmp_path, "echo")
    cfg = spawner_config(tmp_path, exe)
    proc = run_agglo(["run", "-c", str(cfg)], tmp_path, stdin=b'{"n": 1}\n')
    assert proc.returncode == 1
    assert proc.stdout == b""
    [err] = errors_of(proc.stderr)
    assert (err["line"], err["pipeline"], err["process"]) == (1, "P", "Spawn")
    assert "--allow-exec" in err["error"] and "AGGLO_ALLOW_EXEC" in err["error"]
    assert not (tmp_path / "echo.ran").exists()


def test_exec_refused_when_another_path_is_allowed(tmp_path):
    exe = script(tmp_path, "echo")
    other = script(tmp_path, "fail")
    proc = run_agglo(["run", "-c", str(spawner_config(tmp_path, exe)), "--allow-exec", str(other)], tmp_path,
                     stdin=b'{"n": 1}\n')
    assert proc.returncode == 1
    assert "--allow-exec" in errors_of(proc.stderr)[0]["error"]
    assert not (tmp_path / "echo.ran").exists()


def test_exec_allowed_with_flag(tmp_path):
    exe = script(tmp_path, "echo")
    cfg = spawner_config(tmp_path, exe, ("--flag", "v"))
    proc = run_agglo(["run", "-c", str(cfg), "--allow-exec", str(exe)], tmp_path,
                     stdin=b'{"n": 1}\n{"n": 2}\n')
    assert proc.returncode == 0, proc.stderr
    outs = json_lines(proc.stdout)
    assert [o["internal:spawn:output"] for o in outs] == [
        [{"Spawn": {"got": 1, "args": ["--flag", "v"]}}], [{"Spawn": {"got": 2, "args": ["--flag", "v"]}}]]
    assert [o["n"] for o in outs] == [1, 2]
    assert (tmp_path / "echo.ran").read_text() == "xx"


def test_exec_allowed_with_environment(tmp_path):
    exe = script(tmp_path, "echo")
    proc = run_agglo(["run", "-c", str(spawner_config(tmp_path, exe))], tmp_path, stdin=b'{"n": 4}\n',
                     env={"AGGLO_ALLOW_EXEC": f"/nonexistent/thing:{exe}"})
    assert proc.returncode == 0, proc.stderr
    [out] = json_lines(proc.stdout)
    assert out["internal:spawn:output"] == [{"Spawn": {"got": 4, "args": []}}]


def test_exec_non_zero_exit_is_a_record_error_with_stderr(tmp_path):
    exe = script(tmp_path, "fail")
    proc = run_agglo(["run", "-c", str(spawner_config(tmp_path, exe)), "--allow-exec", str(exe)], tmp_path,
                     stdin=b'{"n": 1}\n')
    assert proc.returncode == 1 and proc.stdout == b""
    [err] = errors_of(proc.stderr)
    assert (err["line"], err["pipeline"], err["process"]) == (1, "P", "Spawn")
    assert "status 3" in err["error"]
    assert "boom: the disk is on fire" in err["error"]


def test_exec_printing_non_json_is_a_record_error_with_stderr(tmp_path):
    exe = script(tmp_path, "nonjson")
    proc = run_agglo(["run", "-c", str(spawner_config(tmp_path, exe)), "--allow-exec", str(exe)], tmp_path,
                     stdin=b'{"n": 1}\n')
    assert proc.returncode == 1 and proc.stdout == b""
    [err] = errors_of(proc.stderr)
    assert "not JSON" in err["error"]
    assert "hello, not json" in err["error"]
    assert "warning: about to print garbage" in err["error"]


def test_exec_timeout(tmp_path):
    exe = script(tmp_path, "sleepy")
    start = time.monotonic()
    proc = run_agglo(["run", "-c", str(spawner_config(tmp_path, exe)), "--allow-exec", str(exe),
                      "--exec-timeout", "1"], tmp_path, stdin=b'{"n": 1}\n')
    elapsed = time.monotonic() - start
    assert proc.returncode == 1 and proc.stdout == b""
    [err] = errors_of(proc.stderr)
    assert (err["pipeline"], err["process"]) == ("P", "Spawn")
    assert "timed out after 1s" in err["error"]
    assert elapsed < 4.5, f"took {elapsed:.1f}s; the 5 s script was not cut short"


# --- binge's basic pipeline, end to end -------------------------------------------------------


def generate_basic_events(n: int, seed: int = 7) -> list[dict]:
    """Events per binge's examples/basic/basic_event_gen.json: schemas "foo" and "bar", half and half."""
    gen = json.loads((BINGE.parent / "generators" / "examples__basic__basic_event_gen.json").read_text())
    [foo, bar] = gen["schemas"]
    num = foo["root"]["kvs"]["someNum"]["randomNumeric"]
    string = foo["root"]["kvs"]["someString"]["randomString"]
    vocab = bar["root"]["kvs"]["someVocab"]["vocabString"]
    prefix = gen["stringPrefixes"][vocab["prefixName"]]
    rng = random.Random(seed)
    events: list[dict] = []
    last_num = None
    for i in range(n):
        if i == 0 or rng.random() < gen["schemaDistribution"][0]:
            last_num = rng.randint(num["min"], num["max"])
            events.append({"someNum": last_num,
                           "someDict": {"someFixed": foo["root"]["kvs"]["someDict"]["dict"]["kvs"]["someFixed"]
                                        ["fixedString"]["value"]},
                           "someString": "".join(rng.choice(string["alphabet"])
                                                 for _ in range(rng.randint(string["minLen"], string["maxLen"])))})
        else:
            word = rng.choice(vocab["vocab"])
            events.append({"someVocab": (prefix + word) if rng.random() < 0.5 else word,
                           "someReference": last_num})
    return events


def basic_config(tmp_path: pathlib.Path) -> tuple[pathlib.Path, pathlib.Path, pathlib.Path, pathlib.Path]:
    cfg = json.loads((BINGE / "basic__basic_pipeline.json").read_text())
    before, after, db = tmp_path / "before-events", tmp_path / "after-events", tmp_path / "state.db"
    where = {"BeforeEvents": str(before), "AfterEvents": str(after), "AggregatorStateKVStore": f"sqlite:{db}"}
    for ext in cfg["externalSystems"]:
        ext["connectionString"] = where[ext["name"]]
    return write_config(tmp_path / "basic.json", cfg), before, after, db


def tee_files(directory: pathlib.Path) -> dict[str, dict]:
    files = sorted(p for p in directory.iterdir())
    assert all(p.suffix == ".json" for p in files), [p.name for p in files]
    return {p.stem: json.loads(p.read_text()) for p in files}


def kv_rows(db: pathlib.Path) -> dict[str, object]:
    conn = sqlite3.connect(db)
    try:
        return {k: json.loads(v) for k, v in conn.execute("SELECT key, value FROM kv")}
    finally:
        conn.close()


def test_binge_basic_pipeline(tmp_path):
    cfg, before, after, db = basic_config(tmp_path)
    events = generate_basic_events(300)
    assert {"someNum" in e for e in events} == {True, False}
    assert any(e.get("someVocab", "").startswith("buzz/") for e in events)
    (tmp_path / "events.jsonl").write_bytes(jsonl(events))

    proc = run_agglo(["run", "-c", str(cfg), "-i", "events.jsonl"], tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == b""
    outputs = json_lines(proc.stdout)
    assert len(outputs) == len(events)

    befores, afters = tee_files(before), tee_files(after)
    assert len(befores) == len(afters) == len(events)
    running = 0
    seen_before, seen_after = set(), set()
    for event, out in zip(events, outputs, strict=True):
        stamped = {**event, "internal:partitionID": PARTITION, "internal:name": "BasicPipeline"}
        # The event's own fields come through untouched.
        assert {k: out[k] for k in event} == event
        # someNum's running sum, forwarded by the aggregator (only for events that have someNum).
        if "someNum" in event:
            running += event["someNum"]
            assert out["internal:aggregation:BasicPipeline"] == {"someNum:AggSum": {"value": running}}
        else:
            assert "internal:aggregation:BasicPipeline" not in out
        # The annotator.
        if event.get("someDict", {}).get("someFixed") == "foobar":
            assert out["foobar"] == "found"
        else:
            assert "foobar" not in out
        # The transformer strips "buzz/".
        if "someVocab" in event:
            assert out["someVocabSansPrefix"] == event["someVocab"].removeprefix("buzz/")
        else:
            assert "someVocabSansPrefix" not in out
        # Both tees, with the file each wrote.
        b_entry, a_entry = out["internal:tee:output"]
        assert b_entry["outputType"] == a_entry["outputType"] == "localfile"
        assert (b_entry["connectionString"], a_entry["connectionString"]) == (str(before), str(after))
        seen_before.add(b_entry["uuid"])
        seen_after.add(a_entry["uuid"])
        assert befores[b_entry["uuid"]] == stamped  # before the annotator and the aggregator
        assert afters[a_entry["uuid"]] == {**out, "internal:tee:output": [b_entry]}
    assert seen_before == set(befores) and seen_after == set(afters)

    total = sum(e.get("someNum", 0) for e in events)
    assert running == total
    assert list(kv_rows(db).values()) == [{"value": total}]

    # Running the same file again: the same (deterministic) tee ids, so still one file per event;
    # the aggregate, kept in SQLite, carries on from the first run's total.
    again = run_agglo(["run", "-c", str(cfg), "-i", "events.jsonl"], tmp_path)
    assert again.returncode == 0, again.stderr
    outputs2 = json_lines(again.stdout)
    assert [o["internal:tee:output"] for o in outputs2] == [o["internal:tee:output"] for o in outputs]
    assert set(tee_files(before)) == seen_before and set(tee_files(after)) == seen_after
    assert len(list(before.iterdir())) == len(list(after.iterdir())) == len(events)
    sums = [o["internal:aggregation:BasicPipeline"]["someNum:AggSum"]["value"] for o in outputs2
            if "internal:aggregation:BasicPipeline" in o]
    assert sums[-1] == 2 * total
    assert list(kv_rows(db).values()) == [{"value": 2 * total}]

    # With --dedupe a record seen before (same file, line and content) changes no state: the first such run
    # marks the records (and counts them, as no marks existed), the next one changes nothing.
    for expected in (3 * total, 3 * total):
        deduped = run_agglo(["run", "-c", str(cfg), "-i", "events.jsonl", "--dedupe"], tmp_path)
        assert deduped.returncode == 0, deduped.stderr
        state = {k: v for k, v in kv_rows(db).items() if not k.startswith("mark/")}
        assert list(state.values()) == [{"value": expected}]
        shown = [o["internal:aggregation:BasicPipeline"]["someNum:AggSum"]["value"]
                 for o in json_lines(deduped.stdout) if "internal:aggregation:BasicPipeline" in o]
        assert shown[-1] == expected


def test_run_record_ids_are_the_real_path_and_the_content(tmp_path):
    """With --dedupe, one file under any of its names changes state once and keeps its tee files; new content
    under the old name, and anything piped on stdin, is new data."""
    cfg, before, _, db = basic_config(tmp_path)
    events = [e for e in generate_basic_events(60) if "someNum" in e]
    (tmp_path / "events.jsonl").write_bytes(jsonl(events))
    (tmp_path / "link.jsonl").symlink_to(tmp_path / "events.jsonl")
    (tmp_path / "sub").mkdir()
    total = sum(e["someNum"] for e in events)

    def run(*args: str, stdin: bytes | None = None) -> tuple[float, set[str]]:
        proc = run_agglo(["run", "-c", str(cfg), "--dedupe", *args], tmp_path, stdin=stdin)
        assert proc.returncode == 0, proc.stderr
        [state] = [v["value"] for k, v in kv_rows(db).items() if not k.startswith("mark/")]
        return state, set(tee_files(before))

    first = run("-i", "events.jsonl")
    assert first[0] == total and len(first[1]) == len(events)
    for name in ("./events.jsonl", str(tmp_path / "events.jsonl"), "link.jsonl", "sub/../events.jsonl"):
        assert run("-i", name) == first, name

    # The same name, some lines changed: those are new records; the unchanged ones are still seen before.
    changed = [dict(e, someNum=e["someNum"] + 1) if i % 3 == 0 else e for i, e in enumerate(events)]
    (tmp_path / "events.jsonl").write_bytes(jsonl(changed))
    new_lines = [e for i, e in enumerate(changed) if i % 3 == 0]
    state, tees = run("-i", "events.jsonl")
    assert state == total + sum(e["someNum"] for e in new_lines)
    assert tees > first[1] and len(tees) == len(events) + len(new_lines)

    # Piped input is new data each time: nothing on stdin is dropped as seen before.
    piped, _ = run(stdin=jsonl(events))
    assert piped == state + total
    assert run(stdin=jsonl(events))[0] == piped + total


def test_readme_quick_start(tmp_path):
    shutil.copytree(REPO / "pipelines", tmp_path / "pipelines")
    shutil.copytree(REPO / "events", tmp_path / "events")
    # The installed console script, as in the README's quick start.
    proc = run_agglo(["run", "-c", "pipelines/basic.json", "-i", "events/basic.jsonl"], tmp_path,
                     command=AGGLO_SCRIPT)
    assert proc.returncode == 0, proc.stderr
    events = json_lines((tmp_path / "events" / "basic.jsonl").read_bytes())
    outputs = json_lines(proc.stdout)
    assert len(outputs) == len(events) == 20
    assert [{k: o[k] for k in e} for e, o in zip(events, outputs, strict=True)] == events
    assert len(list((tmp_path / "out" / "before-events").iterdir())) == 20
    assert len(list((tmp_path / "out" / "after-events").iterdir())) == 20



RUN_NEEDS = {"pydantic", "pydantic_core", "orjson", "annotated_types", "typing_extensions", "typing_inspection", "re2"}
"""What ``pip install agglo`` (no extras, what ``make run`` installs) brings, by top-level module."""

LOADED_THIRD_PARTY = """\
import sys, sysconfig
before = set(sys.modules)  # what the interpreter loads by itself (site's .pth hooks), not agglo
from handlers.local import main
# --no-cache: the start that validates, which loads the most
status = main(["run", "--no-cache", "-c", "pipelines/basic.json", "-i", "events/basic.jsonl", "-o", "outputs.jsonl"])
site = sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]
print(" ".join(sorted({name.partition(".")[0] for name, module in list(sys.modules.items())
                       if name not in before and (getattr(module, "__file__", None) or "").startswith(site)})))
sys.exit(status)
"""


def test_make_runs_pipeline_needs_nothing_beyond_the_plain_install(tmp_path):
    shutil.copytree(REPO / "pipelines", tmp_path / "pipelines")
    shutil.copytree(REPO / "events", tmp_path / "events")
    proc = subprocess.run([sys.executable, "-c", LOADED_THIRD_PARTY], cwd=tmp_path, capture_output=True,
                          check=False, timeout=120)
    assert proc.returncode == 0, proc.stderr.decode()
    loaded = set(proc.stdout.decode().split())
    assert "orjson" in loaded and "pydantic" in loaded
    assert loaded <= RUN_NEEDS, f"agglo run loads {sorted(loaded - RUN_NEEDS)}: make run does not install it"
    assert len(json_lines((tmp_path / "outputs.jsonl").read_bytes())) == 20
