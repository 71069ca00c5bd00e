"""Generated plans against the interpreted reference: identical outcomes and identical effects.

Random configs are built from every process type but entwine (the pure ones
with random bodies and random conditions of every shape, the effectful ones
drawn from the property suite's configs), arranged into random pipelines, and
run on random events both ways. Outcomes, every effect crossing and the state
left behind are compared through ``repr`` (types, key order and floats must
match exactly).
"""

from __future__ import annotations

import ast
import hashlib
import json
import pathlib
import re
import subprocess
import sys
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_properties import (
    AGGREGATES,
    CONFIGS,
    FIELD_NAMES,
    JOINS,
    KITCHEN,
    PARTITION,
    SETTINGS,
    Recorder,
    any_events,
    make_world,
    now_ms,
    run_capturing,
    spec,
)

from agglo_core import Plan, Record, compile_plan
from agglo_core.codegen import GeneratedRun, compile_predicate
from agglo_core.conditions import compile_condition, compile_node
from agglo_core.config import Condition, load_config
from agglo_core.errors import RECORD_FAULTS, describe
from agglo_core.ir import PlanIR, build_ir, condition_node
from agglo_core.processes import specs

PATHS = [*FIELD_NAMES, "someDict.someFixed", "someDict.kind", "list.0", "list.1", "meta.big", "nested.kept.x"]


def run_both(config: str | dict, batches: list[list[Record]], now: int) -> None:
    """Generated and interpreted plans of ``config`` agree on every batch, effect and piece of state."""
    text = config if isinstance(config, str) else json.dumps(config)
    generated, interpreted = compile_plan(text), compile_plan(text, codegen=False)
    assert any(type(seg[0]) is GeneratedRun for p in generated.pipelines for seg in p.segments) or not any(
        s.pure for p in generated.pipelines for s in p.stages)
    assert not any(type(seg[0]) is GeneratedRun for p in interpreted.pipelines for seg in p.segments)
    first, second = Recorder(make_world()), Recorder(make_world())
    a = run_capturing(generated, batches, now, first)
    b = run_capturing(interpreted, batches, now, second)
    assert repr(a) == repr(b)
    assert first.log == second.log
    assert repr(sorted(first.world.kv.items(), key=repr)) == repr(sorted(second.world.kv.items(), key=repr))
    # Observed (per-process metrics and traces), a generated plan runs one function per pure stage instead.
    third, fourth = Recorder(make_world()), Recorder(make_world())
    seen_generated, seen_interpreted = Observed(generated), Observed(interpreted)
    c = run_capturing(seen_generated, batches, now, third)
    d = run_capturing(seen_interpreted, batches, now, fourth)
    assert repr(c) == repr(d) == repr(a)
    assert third.log == fourth.log == first.log
    assert seen_generated.calls == seen_interpreted.calls


class Observed:
    """A plan run with an observer, keeping every ``(pipeline, process, in, out)`` it is told."""

    def __init__(self, plan: Plan) -> None:
        self.plan = plan
        self.calls: list[tuple[str, str, int, int]] = []

    def observe(self, pipeline: str, process: str, n_in: int, n_out: int) -> None:
        self.calls.append((pipeline, process, n_in, n_out))

    def run(self, records: list[Record], now_ms: int, perform: Any) -> list[Any]:
        return self.plan.run(records, now_ms, perform, self.observe)


def batches_of(payloads: list[list[dict]]) -> list[list[Record]]:
    out, n = [], 0
    for chunk in payloads:
        out.append([Record(f"r{n + i}", p) for i, p in enumerate(chunk)])
        n += len(chunk)
    return out


batches = st.lists(st.lists(any_events(), min_size=1, max_size=4), min_size=1, max_size=3).map(batches_of)


# --- random conditions and pure processes ------------------------------------------------------------------

def variables(paths: list[str]) -> st.SearchStrategy[dict]:
    return st.sampled_from(paths).map(lambda p: {"variable": {"name": p}})



literals = st.sampled_from(["foobar", "alice", "buzz/x", "", "true", "5"]).map(lambda s: {"literal": s})
numerics = st.sampled_from([0, 1, 2, -3, 2.5, 7, 10 ** 20]).map(lambda n: {"numeric": n})
COMPARATORS = ["Equal", "NotEqual", "GreaterThan", "LessThan", "GreaterThanOrEqual", "LessThanOrEqual"]
BINARY = ["Addition", "Subtract", "Multiply", "Divide", "Power", "Modulus", "RightShift", "LeftShift", "Or",
          "And", "Xor"]


def expressions(paths: list[str]) -> st.SearchStrategy[dict]:
    def extend(inner: st.SearchStrategy[dict]) -> st.SearchStrategy[dict]:
        operand = variables(paths) | literals | numerics | inner.map(lambda e: {"expression": e})
        return st.one_of(
            st.builds(lambda lhs, op, rhs: {"comparator": {"lhs": lhs, "rhs": rhs, "op": op}},
                      operand, st.sampled_from(COMPARATORS), operand),
            st.builds(lambda lhs, want, rhs: {"comparator": {"lhs": lhs, "rhs": rhs,
                                                         "op": "RegexMatch" if want else "RegexNotMatch"}},
                      operand, st.booleans(), st.sampled_from(["^a", "x$", "o+", "buzz/(.*)"]).map(
                          lambda p: {"literal": p}) | variables(paths)),
            st.builds(lambda lhs, op, rhs: {"logical": {"lhs": lhs, "rhs": rhs, "op": op}},
                      operand, st.sampled_from(["LogicalAnd", "LogicalOr"]), operand),
            st.builds(lambda lhs, op, rhs: {"binary": {"lhs": lhs, "rhs": rhs, "op": op}}, operand, st.sampled_from(BINARY),
                      operand),
            st.builds(lambda op, r: {"unary": {"op": op, "rhs": r}},
                      st.sampled_from(["LogicalNot", "Negation", "Inversion"]), operand),
        )

    base = st.one_of(
        st.booleans().map(lambda b: {"boolean": {"value": b}}),
        st.builds(lambda p, want: {"exists": {"key": p, "op": "Exists" if want else "NotExists"}},
                  st.sampled_from(paths), st.booleans()),
    )
    return st.recursive(base, extend, max_leaves=6)


def conditions(paths: list[str] = PATHS) -> st.SearchStrategy[dict | None]:
    exists_ops = st.lists(st.builds(lambda p, want: {"key": p, "op": "Exists" if want else "NotExists"},
                                    st.sampled_from(paths), st.booleans()), min_size=1, max_size=3)
    # The commonest shape in real configs, drawn often on its own: a field against a literal.
    arithmetic = st.builds(lambda lhs, op, rhs: {"expression": {"binary": {"lhs": lhs, "rhs": rhs, "op": op}}},
                           variables(paths), st.sampled_from(BINARY), numerics)
    against_literal = st.builds(lambda lhs, op, rhs: {"comparator": {"lhs": lhs, "rhs": rhs, "op": op}},
                                variables(paths) | arithmetic, st.sampled_from(COMPARATORS), literals | numerics)
    return st.none() | st.just({}) | exists_ops.map(lambda ops: {"exists": {"ops": ops}}) | (
        against_literal | expressions(paths)).map(lambda e: {"expression": e})


def with_condition(body: dict, condition: dict | None) -> dict:
    return body if condition is None else {**body, "condition": condition}


TARGETS = ["out", "someNum", "author", "meta.big", "meta.deep.x", "nested.kept.y", "list.0", "list.3", "seen",
           "internal:name", ""]
annotations = st.builds(lambda key, value, cond: with_condition({"fieldKey": key, "value": value}, cond),
                        st.sampled_from([t for t in TARGETS if t] + ["fresh", "meta.new"]),
                        st.sampled_from(["yes", "", "derived:currentTime", "x\n\"y'"]), conditions())
TRANSFORMATIONS = [
    ("TransformCopy", {}), ("TransformSum", {}), ("TransformCount", {}), ("TransformPopHead", {}),
    ("TransformPopTail", {}), ("TransformMapAdd", {"mapAddArgs": {"value": 1}}),
    ("TransformMapMult", {"mapMultArgs": {"value": 2.5}}),
    ("TransformMapMult", {"mapMultArgs": {"value": 10 ** 19}}),
    ("TransformMapRegex", {"mapRegexArgs": {"regex": "^(\\w)\\w*", "replace": "$1."}}),
    ("TransformLeftFold", {"leftFoldArgs": {"path": "sum"}}), ("TransformRightFold", {"rightFoldArgs": {"path": "concat"}}),
    ("TransformMap", {"mapArgs": {"path": "/bin/double"}}),  # an executable: the stage stays interpreted
]
transformer_specs = st.builds(
    lambda source, target, t, cond: spec(source, target, t[0], cond, **t[1]),
    st.sampled_from(["", *PATHS]), st.sampled_from(TARGETS), st.sampled_from(TRANSFORMATIONS), conditions())


def pure_processes(name: str) -> st.SearchStrategy[dict]:
    return st.one_of(
        st.builds(lambda a: {"annotator": {"name": name, "annotations": a}}, st.lists(annotations, max_size=4)),
        st.builds(lambda c: {"continuation": with_condition({"name": name}, c)}, conditions()),
        st.builds(lambda r, keep: {"filter": {"name": name, "regex": r, "keepMatched": keep}},
                  st.sampled_from(["^some", "a", "^(list|author)$", ".", "^someNum$", "^someFixed$", "^internal:name$",
                                   "^nested$"]), st.booleans()),
        st.builds(lambda s, fwd: {"transformer": {"name": name, "specs": s, "forwardInputFields": fwd}},
                  st.lists(transformer_specs, max_size=4), st.booleans()),
    )


# The effectful process types (and some fixed pure ones), as the property suite defines them.
POOL = [d for cfg in (KITCHEN, AGGREGATES, JOINS) for d in cfg["processDefinitions"]]
POOL_NAMES = [next(iter(d.values()))["name"] for d in POOL]
EXTERNALS = list({e["name"]: e for cfg in (KITCHEN, AGGREGATES, JOINS) for e in cfg["externalSystems"]}.values())


@st.composite
def random_configs(draw: st.DrawFn) -> dict:
    generated = [draw(pure_processes(f"gen-{i}")) for i in range(draw(st.integers(1, 5)))]
    names = [f"gen-{i}" for i in range(len(generated))] + POOL_NAMES
    pipelines = []
    for p in range(draw(st.integers(1, 3))):
        procs = draw(st.lists(st.sampled_from(names), min_size=1, max_size=7, unique=True))
        pipelines.append({"name": f"p{p}", "processes": [{"name": n} for n in procs]})
    return {"partitionUuid": PARTITION, "pipelines": pipelines, "processDefinitions": generated + POOL,
            "externalSystems": EXTERNALS}


@SETTINGS
@given(config=random_configs(), batches=batches, now=now_ms)
def test_random_configs_generated_equals_interpreted(config: dict, batches: list[list[Record]], now: int) -> None:
    run_both(config, batches, now)


@SETTINGS
@given(name=st.sampled_from(sorted(CONFIGS)), batches=batches, now=now_ms)
def test_fixture_configs_generated_equals_interpreted(name: str, batches: list[list[Record]], now: int) -> None:
    run_both(CONFIGS[name], batches, now)


def test_random_configs_cover_every_process_type_but_entwine() -> None:
    pool_kinds = {next(iter(d)) for d in POOL}
    assert pool_kinds | {"annotator", "continuation", "filter", "transformer"} == set(specs()) - {"entwine"}


def test_pure_kinds_emit_code() -> None:
    emitting = {kind for kind, s in specs().items() if s.emit is not None}
    assert emitting == {"annotator", "continuation", "filter", "transformer"}


# --- conditions alone: many more examples, on events made of the values the conditions name ---------------

VALUES = st.sampled_from(["foobar", "alice", "buzz/x", "", "true", "5", "ab", "oo", 0, 1, 2, -3, 2.5, 7, 10 ** 20,
                          True, False, None, 2 ** 64, [], [1], {}, {"x": 1}])
FEW_PATHS = ["a", "b", "someDict.someFixed", "list.0", "list.x"]
"""Few names, so that conditions often meet the fields they name with the values they compare against."""
condition_events = st.fixed_dictionaries({}, optional={
    "a": VALUES, "b": VALUES, "someDict": st.fixed_dictionaries({}, optional={"someFixed": VALUES}) | VALUES,
    "list": st.lists(VALUES, max_size=2) | VALUES})


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(condition=conditions(FEW_PATHS), events=st.lists(condition_events, min_size=1, max_size=8))
def test_generated_conditions_equal_interpreted(condition: dict | None, events: list[dict]) -> None:
    model = Condition.model_validate(condition) if condition is not None else None
    interpreted, generated = compile_condition(model), compile_predicate(condition_node(model))
    assert (interpreted is None) is (generated is None)
    if interpreted is None or generated is None:
        return
    for event in events:
        try:
            want: Any = interpreted(event)
        except RECORD_FAULTS as e:
            want = ("fault", describe(e))
        try:
            got: Any = generated(event)
        except RECORD_FAULTS as e:
            got = ("fault", describe(e))
        assert repr(got) == repr(want), (condition, event)


def test_arithmetic_against_constants_equals_interpreted_on_every_value() -> None:
    """Every operator, with every kind of constant (the inline ones among them), on every kind of value."""
    constants = [0, 1, 2, -3, 7, 2 ** 53, 2.5, -0.0, 10 ** 20]
    values = [0, 1, -1, 7, -7, 2 ** 63, 10 ** 400, 2.5, -0.0, 1e308, "7", True, None, [1], {}]
    for op in BINARY:
        for k in constants:
            for cmp_op in COMPARATORS:
                for bound in (0, 1, 3, 2.5):
                    expression = {"comparator": {"lhs": {"expression": {"binary": {
                        "lhs": {"variable": {"name": "a"}}, "rhs": {"numeric": k}, "op": op}}},
                        "rhs": {"numeric": bound}, "op": cmp_op}}
                    node = condition_node(Condition.model_validate({"expression": expression}))
                    interpreted, generated = compile_node(node), compile_predicate(node)
                    assert interpreted is not None and generated is not None
                    for v in values:
                        assert generated({"a": v}) is interpreted({"a": v}), (op, k, cmp_op, bound, v)


# --- the generated source holds no config text --------------------------------------------------------------

HOSTILE = ['a"b', "x'y", 'q"""z', "l\nm", "__import__('os').system('x')", "\\", "#c", "é\u2028"]


def hostile_config() -> dict:
    cond = {"expression": {"comparator": {"lhs": {"variable": {"name": HOSTILE[0]}}, "rhs": {"literal": HOSTILE[4]},
                                          "op": "Equal"}}}
    return {
        "partitionUuid": PARTITION,
        "pipelines": [{"name": h, "processes": [{"name": f"ann{h}"}, {"name": f"tr{h}"}, {"name": f"go{h}"}]}
                      for h in HOSTILE],
        "processDefinitions": [d for h in HOSTILE for d in (
            {"annotator": {"name": f"ann{h}", "annotations": [
                {"fieldKey": h, "value": h, "condition": cond}, {"fieldKey": f"{h}.in", "value": h}]}},
            {"transformer": {"name": f"tr{h}", "forwardInputFields": True, "specs": [
                spec(h, f"{h}2", "TransformMapRegex", mapRegexArgs={"regex": "(.)", "replace": h.replace("$", "")}),
                spec(h, h, "TransformCopy", {"exists": {"ops": [{"key": h, "op": "Exists"}]}})]}},
            {"continuation": {"name": f"go{h}", "condition": {"expression": {"comparator": {
                "lhs": {"variable": {"name": h}}, "rhs": {"literal": re.escape(h)}, "op": "RegexNotMatch"}}}}},
        )],
    }


def test_no_config_string_reaches_generated_source() -> None:
    plan = compile_plan(json.dumps(hostile_config()))
    sources = [seg[0].source for p in plan.pipelines for seg in (*p.segments, *p.single)]
    assert len(sources) == 4 * len(HOSTILE)  # each pipeline: one fused run, and one per process
    for source in sources:
        for h in HOSTILE:
            for piece in {h, repr(h), json.dumps(h), *(p for p in h.split("\n") if len(p) > 1)}:
                assert piece not in source, (piece, source)
        assert "__import__" not in source


@SETTINGS
@given(batches=st.lists(st.lists(st.fixed_dictionaries({}, optional={h: st.sampled_from(["", "x", h, 1])
                                                                       for h in HOSTILE}), min_size=1, max_size=3),
                        min_size=1, max_size=2).map(batches_of), now=now_ms)
def test_hostile_config_generated_equals_interpreted(batches: list[list[Record]], now: int) -> None:
    run_both(hostile_config(), batches, now)


# --- changing events in place never reaches what an effect was handed ---------------------------------------


@SETTINGS
@given(batches=batches, now=now_ms)
def test_effects_keep_the_bodies_they_were_handed(batches: list[list[Record]], now: int) -> None:
    """A connector may keep a body it was given (an in-memory store does); later stages must not change it."""
    config = {"partitionUuid": PARTITION, "pipelines": [{"name": "p", "processes": [
        {"name": "first"}, {"name": "tee"}, {"name": "mark"}, {"name": "shape"}, {"name": "tee"}]}],
        "processDefinitions": [
            {"annotator": {"name": "first", "annotations": [{"fieldKey": "first", "value": "1"}]}},
            {"tee": {"name": "tee", "outputConnectorRef": "bucket"}},
            {"annotator": {"name": "mark", "annotations": [{"fieldKey": "marked", "value": "yes"}]}},
            {"transformer": {"name": "shape", "forwardInputFields": True,
                             "specs": [spec("someNum", "someNum", "TransformMapAdd", mapAddArgs={"value": 1})]}}],
        "externalSystems": EXTERNALS}
    plan = compile_plan(json.dumps(config))
    handed: list[tuple[dict, str]] = []

    def keep(effects: list[Any]) -> list[Any]:
        handed.extend((e.body, repr(e.body)) for e in effects)
        return [None] * len(effects)

    for batch in [*batches, [Record("plain", {"someNum": 1})]]:
        plan.run(batch, now, keep)
    assert len(handed) >= 2
    for body, seen in handed:
        assert repr(body) == seen


# --- checks of values the generated code makes ------------------------------------------------------------


def test_generated_code_checks_what_it_makes_with_the_interpreted_words() -> None:
    config = {"partitionUuid": PARTITION, "pipelines": [{"name": "p", "processes": [{"name": "t"}]}],
              "processDefinitions": [{"transformer": {"name": "t", "specs": [
                  spec("list", "total", "TransformSum"), spec("list", "", "TransformCopy")]}}]}
    text = json.dumps(config)
    records = [Record("big", {"list": [2 ** 64 - 1, 1]}), Record("merge", {"list": [1]})]
    for codegen in (True, False):
        [big, merge] = compile_plan(text, codegen=codegen).run(records, 0, lambda effects: [])
        assert [e.message for e in big.errors] == [
            "the result cannot be written as JSON: total: 18446744073709551616 is outside the 64-bit integer range"], codegen
        assert [e.message for e in merge.errors] == [
            "an empty targetField merges a map into the event, but the result is a list"], codegen


# --- the IR -----------------------------------------------------------------------------------------------


def round_trip(ir: PlanIR) -> PlanIR:
    return PlanIR.from_data(json.loads(json.dumps(ir.to_data())))


def test_ir_round_trips_through_json_for_every_fixture() -> None:
    for name, text in CONFIGS.items():
        ir = build_ir(load_config(text))
        assert round_trip(ir) == ir, name
        assert [p.name for p in ir.pipelines] == [p["name"] for p in json.loads(text)["pipelines"]]


@SETTINGS
@given(config=random_configs())
def test_ir_of_random_configs_round_trips(config: dict) -> None:
    ir = build_ir(load_config(json.dumps(config)))
    assert round_trip(ir) == ir


def test_ir_conditions_are_trees() -> None:
    ir = build_ir(load_config(CONFIGS["basic__basic_pipeline"]))
    annotate = next(s for s in ir.pipelines[0].processes if s.kind == "annotator")
    assert annotate.params["annotations"][0]["condition"] == (
        "cmp", "Equal", ("var", ("someDict", "someFixed")), ("const", "foobar"))
    summed = next(s for s in ir.pipelines[0].processes if s.kind == "aggregator")
    assert summed.params["condition"] is None  # `{}` always holds


def test_generated_function_is_readable() -> None:
    plan = compile_plan(CONFIGS["basic__basic_pipeline"])
    sources = [seg[0].source for p in plan.pipelines for seg in p.segments if type(seg[0]) is GeneratedRun]
    assert sources[0].startswith("def run_BasicPipeline_1_AnnotateFooBar(items, inv):")
    assert "# 1: annotator AnnotateFooBar" in sources[0]



# --- agglo compile --show ---------------------------------------------------------------------------------

REPO = pathlib.Path(__file__).resolve().parents[2]


def agglo(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", "import sys; from handlers.local import main; sys.exit(main())",
                           *args], cwd=REPO, capture_output=True, text=True, timeout=120, check=False)


def test_compile_show_prints_each_pipelines_generated_python(tmp_path: pathlib.Path) -> None:
    result = agglo("compile", "-c", "pipelines/basic.json", "--show")
    assert result.returncode == 0, result.stderr
    text = result.stdout
    tree = ast.parse(text)  # the whole listing is Python: code, and comments naming the constants
    functions = [n.name for n in tree.body if isinstance(n, ast.FunctionDef)]
    plan = compile_plan((REPO / "pipelines" / "basic.json").read_text())
    assert functions == [seg[0].source.split("(")[0].removeprefix("def ") for p in plan.pipelines
                         for seg in p.segments if type(seg[0]) is GeneratedRun]
    assert "# 2: aggregator SumSomeNum runs interpreted (it yields effects)" in text
    assert "#   _k0 = 'found'" in text

    hostile = tmp_path / "hostile.json"
    hostile.write_text(json.dumps(hostile_config()))
    result = agglo("compile", "-c", str(hostile), "--show")
    assert result.returncode == 0, result.stderr
    ast.parse(result.stdout)  # quotes and newlines in names and values cannot break the listing
    assert "__import__" not in "".join(line.split("#")[0] for line in result.stdout.splitlines())


def test_compile_without_show_is_a_usage_error() -> None:
    result = agglo("compile", "-c", "pipelines/basic.json")
    assert result.returncode == 2 and "--show" in result.stderr


def test_compile_output_writes_the_ir_and_the_configs_hash(tmp_path: pathlib.Path) -> None:
    config = REPO / "pipelines" / "basic.json"
    result = agglo("compile", "-c", str(config), "-o", str(tmp_path / "out"))
    assert result.returncode == 0, result.stderr
    artefact = json.loads((tmp_path / "out" / "plan.json").read_text())
    assert artefact["configSha256"] == hashlib.sha256(config.read_bytes()).hexdigest()
    assert PlanIR.from_data(artefact["ir"]) == build_ir(load_config(config.read_text()))
    assert (tmp_path / "out" / "plan.py").read_text() == compile_plan(config.read_text()).source()


def test_the_readme_shows_what_compile_show_prints() -> None:
    readme = (REPO / "README.md").read_text()
    plan = compile_plan((REPO / "pipelines" / "basic.json").read_text())
    [annotate] = [seg[0] for seg in plan.pipelines[0].segments if type(seg[0]) is GeneratedRun
                  and seg[0].name == "AnnotateFooBar"]
    shown = annotate.source + "\n" + "".join(f"#   {name} = {note}\n" for name, note in annotate.notes)
    assert shown in readme
