"""binge's spawner tests, against real executables: a negative delay is no delay, and one spawner's
synchronous spawns happen in input order (``agglo run`` in a subprocess) while other pipelines' still overlap."""

from __future__ import annotations

import json
import pathlib
import random
import stat
import string

from _servers import json_lines, run_agglo, write_config
from builders import BINGE, config

from agglo_core import Exec, Record, compile_plan
from handlers.connectors import default_registry
from handlers.runtime.driver import Runtime
from handlers.runtime.execs import ExecRunner


def executable(path: pathlib.Path, body: str) -> pathlib.Path:
    path.write_text(body)
    path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return path


def spawner(name: str, exe: pathlib.Path, args: list[str], sync: bool = True, delay: int = 0) -> dict:
    return {"spawner": {"name": name, "doSync": sync, "delayInMs": delay,
                        "job": {"runnable": {"pathToExec": str(exe), "cmdArgs": args}}}}


# --- delayInMs < 0 --------------------------------------------------------------------------------------------


def test_spawner_negative_delay(tmp_path: pathlib.Path) -> None:
    # binge: TestSpawnerHappyPathSync, TestSpawnerFailSync, TestSpawnerHappyPathAsync, all with a delay of -1
    ran = tmp_path / "ran"
    answer = executable(tmp_path / "answer", f'#!/bin/sh\ncat >> "{ran}"\necho \'{{"ok": true}}\'\n')
    fail = executable(tmp_path / "fail", "#!/bin/sh\ncat > /dev/null\necho 'no luck' >&2\nexit 3\n")
    runner = ExecRunner(allowed=frozenset({str(answer.resolve()), str(fail.resolve())}), timeout_s=10)
    event = {"n": 1, "nested": {"k": ["v"]}}

    def run(exe: pathlib.Path, sync: bool) -> tuple[dict | None, list]:
        plan = compile_plan(config(spawner("Spawn", exe, [], sync=sync, delay=-1)))  # accepted, not refused
        [outcome] = Runtime.build(plan, default_registry(), runner).process([Record("r1", event)])
        return (outcome.outputs[0][1] if outcome.outputs else None), outcome.errors

    out, errors = run(answer, sync=True)
    assert errors == [] and out is not None
    assert {k: v for k, v in out.items() if not k.startswith("internal:")} == event
    assert out["internal:spawn:output"] == [{"Spawn": {"ok": True}}]
    assert json.loads(ran.read_text()) == {**event, "internal:partitionID": out["internal:partitionID"],
                                           "internal:name": "P"}

    out, errors = run(fail, sync=True)
    [error] = errors
    assert out is None and "status 3" in error.message and "no luck" in error.message and not error.transient

    out, errors = run(answer, sync=False)
    assert errors == [] and out is not None and "internal:spawn:output" not in out
    assert runner.drain(10) == 0
    assert len(ran.read_text().splitlines()) == 2  # the asynchronous spawn ran too

    # The runner itself takes a negative delay as none (sleeping a negative time would raise).
    assert runner.perform([Exec(str(answer), (), {"n": 2}, delay_ms=-1)]) == [{"ok": True}]


# --- synchronous spawns in input order --------------------------------------------------------------------------


def generated_history(rng: random.Random, n: int) -> tuple[list[dict], list[str]]:
    """binge's TestPipelinesBasic events: commits by random authors, then deploys of random ones of them
    (each githash deployed once, in a random order); and the githashes in the order they are deployed."""
    hashes = rng.sample([f"{h:08x}" for h in range(16**4, 16**5)], n)
    commits = [{"author": rng.choice(["kevin", "bob", "jane"]), "parent": "x", "hash": h,
                "body": "".join(rng.choices(string.ascii_letters, k=rng.randint(0, 12)))} for h in hashes]
    deployed = rng.sample(hashes, n)
    return commits + [{"user": "deploybot", "githash": h} for h in deployed], deployed


def test_pipelines_basic_spawner_order(tmp_path: pathlib.Path) -> None:
    # binge: TestPipelinesBasic — its spawner appends each deploy's githash to a file, which must list them in order
    appended = tmp_path / "testPipelinesBasic"
    printvals = executable(tmp_path / "printvals", (
        "#!/usr/bin/env python3\n"
        "import json, sys\n"
        "event = json.load(sys.stdin)\n"
        "with open(sys.argv[1], 'a') as f:\n"
        "    f.write(str(event[sys.argv[2]]) + '\\n')\n"))
    cfg = json.loads((BINGE / "test-basic_pipeline.json").read_text())
    [spawn] = [d["spawner"] for d in cfg["processDefinitions"] if "spawner" in d]
    spawn["job"]["runnable"] = {"pathToExec": str(printvals), "cmdArgs": [str(appended), "githash"]}
    write_config(tmp_path / "basic.json", cfg)
    for seed in range(2):  # two histories, each one batch of many spawns
        appended.unlink(missing_ok=True)
        events, deployed = generated_history(random.Random(seed), 60)
        proc = run_agglo(["run", "-c", "basic.json", "--allow-exec", str(printvals)], tmp_path,
                         stdin=b"".join(json.dumps(e).encode() + b"\n" for e in events), timeout=180)
        assert proc.returncode == 0, proc.stderr
        outs = json_lines(proc.stdout)
        assert [o["internal:completion:completion-hashjoin"] for o in outs[60:]] == ["complete"] * 60
        assert appended.read_text().split() == deployed


INTERVAL = """#!/usr/bin/env python3
import json, sys, time
event = json.load(sys.stdin)
start = time.time()
time.sleep(0.2)
with open(sys.argv[1], "a") as f:
    f.write(json.dumps({"n": event["n"], "start": start, "end": time.time()}) + "\\n")
"""


def intervals(path: pathlib.Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_two_pipelines_spawns_still_overlap(tmp_path: pathlib.Path) -> None:
    exe = executable(tmp_path / "interval", INTERVAL)
    a, b = tmp_path / "a.log", tmp_path / "b.log"
    cfg = config(spawner("SpawnA", exe, [str(a)]), spawner("SpawnB", exe, [str(b)]), order=["SpawnA"],
                 extra_pipelines=({"name": "Q", "processes": [{"name": "SpawnB"}]},))
    write_config(tmp_path / "two.json", cfg)
    events = [{"n": i} for i in range(4)]
    proc = run_agglo(["run", "-c", "two.json", "--allow-exec", str(exe)], tmp_path,
                     stdin=b"".join(json.dumps(e).encode() + b"\n" for e in events))
    assert proc.returncode == 0, proc.stderr
    for log in (a, b):  # one spawner's spawns: in input order, each after the one before
        spans = intervals(log)
        assert [s["n"] for s in spans] == [0, 1, 2, 3]
        assert all(prev["end"] <= nxt["start"] for prev, nxt in zip(spans, spans[1:], strict=False))
    # The two pipelines' spawners run beside each other: some span of one overlaps some span of the other.
    assert any(x["start"] < y["end"] and y["start"] < x["end"] for x in intervals(a) for y in intervals(b))


def test_interleaved_lanes_answer_each_exec_in_its_place(tmp_path: pathlib.Path) -> None:
    """Execs of two lanes and none, interleaved in one call: each result is its own exec's, and each lane ran
    its execs in the order given."""
    log = tmp_path / "log"
    echo = executable(tmp_path / "echo", f'#!/bin/sh\ntee -a "{log}"\necho\n')
    runner = ExecRunner(allowed=frozenset({str(echo.resolve())}), timeout_s=10)
    rng = random.Random(3)
    lanes = [rng.choice(["", "A", "B"]) for _ in range(40)]
    effects = [Exec(str(echo), (), {"i": i, "lane": lane}, lane=lane) for i, lane in enumerate(lanes)]
    assert runner.perform(effects) == [{"i": i, "lane": lane} for i, lane in enumerate(lanes)]
    ran = [json.loads(line) for line in log.read_text().splitlines()]
    for lane in ("A", "B"):
        assert [r["i"] for r in ran if r["lane"] == lane] == [i for i, x in enumerate(lanes) if x == lane]
