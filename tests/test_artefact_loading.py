"""The serverless adapters load the compiled artefact at init, without pydantic, and fall back when they must.

Each test starts a fresh interpreter that imports the adapter (its init phase) with ``AGGLO_CONFIG`` and,
where named, ``AGGLO_PLAN`` set, runs an event through it and reports which modules it imported and what it
logged.
"""

from __future__ import annotations

import contextlib
import json
import os
import pathlib
import subprocess
import sys

import pytest

from agglo_core import ConfigError
from agglo_core.ir import IR_VERSION
from benchmarks._aws import basic_config
from handlers.runtime.artefact import PLAN_FILE, SOURCE_FILE, StaleArtefact, artefact_dir, read_artefact
from handlers.runtime.boot import serverless_plan

ROOT = pathlib.Path(__file__).resolve().parents[1]
EVENT = {"someNum": 254, "someDict": {"someFixed": "foobar"}, "someString": "bcd6b1bc88c2c8bd"}
FALLBACK = "validating the config in full instead"

RUN_LAMBDA = """
import json, sys
from handlers import aws_lambda
answer = aws_lambda.handler([json.loads(sys.argv[1])], None)
print(json.dumps({"answer": answer, "pydantic": "pydantic" in sys.modules,
                  "models": "agglo_core.config" in sys.modules}))
"""

RUN_CLOUD_FUNCTION = """
import json, sys
from handlers import gcp_functions
from agglo_core import Record
[outcome] = gcp_functions.app().runtime.process([Record("r1", json.loads(sys.argv[1]))])
print(json.dumps({"answer": {"outputs": [e for _, e in outcome.outputs], "errors": [e.to_dict() for e in outcome.errors]},
                  "pydantic": "pydantic" in sys.modules, "models": "agglo_core.config" in sys.modules}))
"""


def compile_artefact(config: pathlib.Path, out: pathlib.Path, cwd: pathlib.Path = ROOT) -> None:
    base = {k: v for k, v in os.environ.items() if not k.startswith("AGGLO_")}
    proc = subprocess.run([sys.executable, "-m", "handlers.local", "compile", "-c", str(config), "-o", str(out)],
                          cwd=cwd, capture_output=True, text=True, timeout=120,
                          env={**base, "PYTHONPATH": str(ROOT)})
    assert proc.returncode == 0, proc.stderr


def start(script: str, env: dict[str, str], cwd: pathlib.Path) -> tuple[dict, str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("AGGLO_")}
    proc = subprocess.run([sys.executable, "-c", script, json.dumps(EVENT)], cwd=cwd, capture_output=True,
                          text=True, timeout=120, env={**base, "PYTHONPATH": str(ROOT), **env})
    assert proc.returncode == 0, proc.stderr[-3000:]
    *logged, last = proc.stdout.strip().splitlines()  # Cloud Functions log (as JSON) on stdout
    return json.loads(last), "\n".join([*logged, proc.stderr])


@pytest.fixture
def config(tmp_path: pathlib.Path) -> pathlib.Path:
    return basic_config(tmp_path, f"sqlite:{tmp_path / 'state.db'}")


@pytest.mark.parametrize("script", [RUN_LAMBDA, RUN_CLOUD_FUNCTION], ids=["lambda", "cloud-functions"])
def test_with_its_artefact_the_function_starts_and_runs_without_pydantic(tmp_path, config, script):
    compile_artefact(config, tmp_path / "compiled")
    loaded, logged = start(script, {"AGGLO_CONFIG": str(config), "AGGLO_PLAN": str(tmp_path / "compiled")},
                           tmp_path)
    assert not loaded["pydantic"] and not loaded["models"]
    assert FALLBACK not in logged
    (tmp_path / "state.db").unlink()  # the same start from the config alone, on fresh state
    validated, logged = start(script, {"AGGLO_CONFIG": str(config), "AGGLO_PLAN": str(tmp_path / "nothing")},
                              tmp_path)
    assert validated["pydantic"] and FALLBACK in logged
    assert loaded["answer"] == validated["answer"]
    assert loaded["answer"]["errors"] == [] and loaded["answer"]["outputs"][0]["someNum"] == 254


def test_without_agglo_plan_the_artefact_beside_the_config_is_used(tmp_path, config):
    compile_artefact(config, config.with_suffix(".plan"))
    loaded, logged = start(RUN_LAMBDA, {"AGGLO_CONFIG": str(config)}, tmp_path)
    assert not loaded["pydantic"] and FALLBACK not in logged
    assert artefact_dir({"AGGLO_CONFIG": str(config)}) == str(config.with_suffix(".plan"))


def test_a_relative_agglo_plan_is_looked_up_in_the_package_first(tmp_path, config):
    package = tmp_path / "task"
    compile_artefact(config, package / "plans" / "basic")
    assert artefact_dir({"AGGLO_PLAN": "plans/basic", "LAMBDA_TASK_ROOT": str(package)}) == \
        str(package / "plans" / "basic")
    assert artefact_dir({"AGGLO_CONFIG": "s3://bucket/config.json"}) is None


def _stale(case: str, config: pathlib.Path, compiled: pathlib.Path) -> str:
    """Spoil the artefact (or the config) as ``case`` says; return what the warning must say."""
    plan = compiled / PLAN_FILE
    if case == "missing":
        plan.unlink()
        return "no compiled plan at"
    if case == "config-changed":
        config.write_bytes(config.read_bytes().replace(b'"found"', b'"seen"'))
        return "compiled from another config"
    data = json.loads(plan.read_text())
    if case == "ir-version":
        data["ir"]["version"] = IR_VERSION + 1
        plan.write_text(json.dumps(data))
        return f"IR version {IR_VERSION + 1} is not {IR_VERSION}"
    if case == "not-json":
        plan.write_bytes(plan.read_bytes()[:200])
        return "is not valid JSON"
    if case == "wrong-shape":
        del data["ir"]["pipelines"][0]["processes"][0]["params"]
        plan.write_text(json.dumps(data))
        return "cannot be used by this agglo"
    if case == "unreadable":
        plan.unlink()
        plan.mkdir()  # a directory where the file should be: open() fails, not with "no such file"
        return "cannot read the compiled plan"
    raise AssertionError(case)


@pytest.mark.parametrize("case", ["missing", "config-changed", "ir-version", "not-json", "wrong-shape",
                                  "unreadable"])
def test_a_stale_or_broken_artefact_is_named_in_one_warning_and_the_config_is_validated(tmp_path, config, case):
    compiled = tmp_path / "compiled"
    compile_artefact(config, compiled)
    reason = _stale(case, config, compiled)
    loaded, logged = start(RUN_LAMBDA, {"AGGLO_CONFIG": str(config), "AGGLO_PLAN": str(compiled)}, tmp_path)
    warnings = [line for line in logged.splitlines() if FALLBACK in line]
    assert len(warnings) == 1 and reason in warnings[0], logged[-3000:]
    assert loaded["pydantic"]  # validated in full
    assert loaded["answer"]["errors"] == []
    expected = "seen" if case == "config-changed" else "found"
    assert loaded["answer"]["outputs"][0]["foobar"] == expected  # the config's own pipeline, as it is now


def test_every_refusal_is_a_stale_artefact_never_a_crash(tmp_path, config):
    """Whatever the bytes of plan.json, reading it answers an artefact or StaleArtefact."""
    from hypothesis import given, settings
    from hypothesis import strategies as st

    compiled = tmp_path / "compiled"
    compile_artefact(config, compiled)
    raw = config.read_bytes()
    good = (compiled / PLAN_FILE).read_bytes()

    @settings(max_examples=200, deadline=None)
    @given(cut=st.integers(0, len(good)), junk=st.binary(max_size=8), at=st.integers(0, len(good)))
    def check(cut: int, junk: bytes, at: int) -> None:
        spoiled = good[:at] + junk + good[at:cut] if at < cut else good[:cut] + junk
        (compiled / PLAN_FILE).write_bytes(spoiled)
        with contextlib.suppress(StaleArtefact):
            read_artefact(raw, str(compiled))

    check()


def test_an_artefact_names_the_private_keys_the_plan_needs_and_they_are_read_at_start(tmp_path, monkeypatch):
    """entwine's pemPath: listed in plan.json; read when the function starts; one that is missing stops it."""
    from entwine_world import ed25519_pem

    config = tmp_path / "entwine.json"
    config.write_bytes((ROOT / "pipelines/entwine-a.json").read_bytes())
    monkeypatch.chdir(tmp_path)
    compile_artefact(config, tmp_path / "compiled", tmp_path)  # no key here yet: the artefact is written anyway
    assert (tmp_path / "compiled" / SOURCE_FILE).read_text().startswith("# Generated by agglo")
    env = {"AGGLO_CONFIG": str(config), "AGGLO_PLAN": str(tmp_path / "compiled")}
    artefact = read_artefact(config.read_bytes(), str(tmp_path / "compiled"))
    [(where, pem_path)] = artefact.key_files
    assert where == "processDefinitions[1].entwine.pemPath" and pem_path == "out/a.pem"
    with pytest.raises(ConfigError, match=r"processDefinitions\[1\]\.entwine\.pemPath: cannot read out/a.pem"):
        serverless_plan(config.read_bytes(), env)
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "a.pem").write_bytes(ed25519_pem())
    plan = serverless_plan(config.read_bytes(), env)
    assert plan.config is None and "EntwineA" in [s.name for s in plan.pipelines[0].stages]
