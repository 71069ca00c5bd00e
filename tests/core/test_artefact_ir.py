"""A plan built from the IR as an artefact carries it (plain JSON, read back) is the plan of the config.

``Plan(config)`` and ``Plan.from_ir`` share one way of building stages; these tests hold that the IR's trip
through JSON loses nothing a stage reads: same outcomes, same effects, same state, for every process type.
"""

from __future__ import annotations

import json
import sys

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st
from test_codegen import batches, random_configs
from test_properties import CONFIGS, SETTINGS, Recorder, make_world, now_ms, run_capturing

from agglo_core import Plan, Record, compile_plan
from agglo_core.config import load_config
from agglo_core.ir import IR_VERSION, PlanIR, build_ir
from handlers.runtime.artefact import artefact_data, parse_artefact


def through_json(ir: PlanIR) -> PlanIR:
    """The IR as an artefact writes it and a function reads it back."""
    raw = b"{}"
    return parse_artefact(raw, artefact_data(raw, ir, ())).ir


def assert_same_runs(config: str, batches: list[list[Record]], now: int, codegen: bool) -> None:
    validated = compile_plan(config, codegen=codegen)
    ir = through_json(build_ir(load_config(config)))
    assert ir == validated.ir
    loaded = Plan.from_ir(ir, codegen=codegen)
    assert loaded.config is None
    first, second = Recorder(make_world()), Recorder(make_world())
    assert repr(run_capturing(validated, batches, now, first)) == repr(run_capturing(loaded, batches, now, second))
    assert first.log == second.log
    assert repr(sorted(first.world.kv.items(), key=repr)) == repr(sorted(second.world.kv.items(), key=repr))
    if codegen:
        assert loaded.source() == validated.source()


@settings(SETTINGS)
@given(name=st.sampled_from(sorted(CONFIGS)), batches=batches, now=now_ms, codegen=st.booleans())
def test_fixture_configs_run_the_same_from_their_ir(name: str, batches: list[list[Record]], now: int,
                                                   codegen: bool) -> None:
    assert_same_runs(CONFIGS[name], batches, now, codegen)


@settings(SETTINGS)
@given(config=random_configs(), batches=batches, now=now_ms)
def test_random_configs_run_the_same_from_their_ir(config: dict, batches: list[list[Record]], now: int) -> None:
    assert_same_runs(json.dumps(config), batches, now, True)


def test_every_process_type_appears_in_the_fixtures() -> None:
    """What the tests above cover: every kind but entwine (its own tests load it from an artefact)."""
    kinds = {step.kind for text in CONFIGS.values() for p in build_ir(load_config(text)).pipelines
             for step in p.processes}
    assert kinds >= {"annotator", "aggregator", "completer", "filter", "spawner", "tee", "transformer",
                     "continuation"}


def test_a_tees_transformer_travels_with_the_ir() -> None:
    """A definition used only by reference (a tee's transformer) is in the IR, and nothing else is."""
    with_tee = next(text for text in CONFIGS.values() if '"transformerRef": "' in text.replace(": \"\"", ""))
    config = load_config(with_tee)
    ir = build_ir(config)
    used = {d.name for d in ir.definitions}
    refs = {d.body.transformerRef for d in config.processDefinitions if d.kind == "tee" and d.body.transformerRef}
    assert used == refs and used


@given(version=st.integers() | st.none() | st.text(max_size=3))
def test_another_ir_version_is_refused(version: object) -> None:
    data = build_ir(load_config(next(iter(CONFIGS.values())))).to_data()
    if version == IR_VERSION:
        return
    try:
        PlanIR.from_data({**data, "version": version})
    except ValueError as e:
        assert "IR version" in str(e)
    else:
        raise AssertionError("an IR of another version was read")


def test_the_stages_import_no_pydantic() -> None:
    """Building and running a plan from its IR imports no config model (checked in a fresh interpreter)."""
    import subprocess

    script = """
import sys, json
from agglo_core import Plan
from agglo_core.ir import PlanIR
import agglo_core.stages.aggregator, agglo_core.stages.annotator, agglo_core.stages.completer
import agglo_core.stages.continuation, agglo_core.stages.entwine, agglo_core.stages.filter
import agglo_core.stages.spawner, agglo_core.stages.tee, agglo_core.stages.transformer
plan = Plan.from_ir(PlanIR.from_data(json.loads(sys.stdin.read())))
print(sorted(m for m in sys.modules if m.split(".")[0] in ("pydantic", "pydantic_core")
             or m in ("agglo_core.config", "agglo_core.processes")))
"""
    data = orjson.dumps(build_ir(load_config(CONFIGS[sorted(CONFIGS)[0]])).to_data())
    proc = subprocess.run([sys.executable, "-c", script], input=data, capture_output=True, timeout=120)
    assert proc.returncode == 0, proc.stderr.decode()[-3000:]
    assert proc.stdout.decode().strip() == "[]"
