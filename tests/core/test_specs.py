"""Process specs: each process type is one module, and everything that knows a kind learns it from the spec."""

from __future__ import annotations

import ast
import json
import sys
import textwrap
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agglo_core import ConfigError, compile_plan, load_config
from agglo_core.config import (
    AggregationType,
    ComparatorOperator,
    ExistsOperator,
    ExternalType,
    LogicalOperator,
    TransformationType,
)
from agglo_core.lint import lint
from agglo_core.processes import config_model, definition_model, specs
from agglo_core.records import Record

REPO = Path(__file__).resolve().parents[2]
PARTITION = "c5024ca8-d601-499f-bb24-daae74357b5e"
BINGE_ORDER = ["annotator", "aggregator", "completer", "filter", "spawner", "tee", "transformer", "continuation",
               "entwine"]


def config(definitions: list[dict], pipelines: list[dict] | None = None, externals: list[dict] | None = None) -> dict:
    names = [next(iter(d.values()))["name"] for d in definitions]
    return {"partitionUuid": PARTITION, "processDefinitions": definitions, "externalSystems": externals or [],
            "pipelines": pipelines if pipelines is not None else [
                {"name": "P", "processes": [{"name": n} for n in names]}]}


def problems(data: dict) -> list[str]:
    with pytest.raises(ConfigError) as e:
        load_config(data)
    return e.value.problems


def test_every_process_module_declares_a_spec_in_binges_order() -> None:
    modules = sorted(p.stem for p in (REPO / "agglo_core" / "processes").glob("*.py")
                     if p.stem not in ("__init__", "spec"))
    assert sorted(specs()) == modules
    assert list(specs()) == BINGE_ORDER
    fields = definition_model().model_fields
    assert list(fields) == BINGE_ORDER
    for kind, spec in specs().items():
        assert fields[kind].annotation == spec.model | None
        assert spec.summary and spec.doc and "```json" in spec.doc, kind


def test_every_docs_example_is_a_valid_definition_of_its_kind() -> None:
    for kind, spec in specs().items():
        example = spec.doc.split("```json\n", 1)[1].split("```", 1)[0]
        definition = definition_model().model_validate(json.loads(example))
        assert definition.kind == kind


def test_the_readme_process_reference_is_what_the_specs_say() -> None:
    from handlers.authoring.reference import with_reference

    readme = (REPO / "README.md").read_text()
    assert with_reference(readme) == readme, "run: python -m handlers.authoring.reference"


def test_the_schema_describes_each_kind_with_its_summary() -> None:
    schema = config_model().model_json_schema()
    props = schema["$defs"]["ProcessDefinition"]["properties"]
    assert {k: v["description"] for k, v in props.items()} == {k: s.summary for k, s in specs().items()}


# --- no ladder of kinds outside the specs ---------------------------------------------------------------------


def _kind_comparisons(path: Path) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Compare):
            for side in (node.left, *node.comparators):
                if isinstance(side, ast.Constant) and side.value in BINGE_ORDER:
                    found.append(f"{path.relative_to(REPO)}:{node.lineno} compares with {side.value!r}")
    return found


def test_nothing_outside_a_process_module_branches_on_a_process_kind() -> None:
    outside = [p for p in [*(REPO / "agglo_core").rglob("*.py"), *(REPO / "handlers").rglob("*.py")]
               if p.parent != REPO / "agglo_core" / "processes"]
    assert [c for p in outside for c in _kind_comparisons(p)] == []


# --- a new process type is one module -------------------------------------------------------------------------

STAMP = '''
"""stamp: a process type that exists only in this test, to show that one module is all a new kind needs."""

from pydantic import StrictStr

from agglo_core.conditions import compile_node
from agglo_core.config import ConditionField, ConfigModel
from agglo_core.lint import Finding
from agglo_core.processes.spec import ProcessSpec


class Stamp(ConfigModel):
    name: StrictStr = ""
    field: StrictStr = ""
    condition: ConditionField | None = None


class StampStage:
    pure = True

    def __init__(self, ctx):
        p = ctx.step.params
        self.name, self._field, self._cond = p["name"], p["field"], compile_node(p["condition"])

    def apply(self, event, inv):
        return {**event, self._field: True} if self._cond is None or self._cond(event) else event


def _check(d, ctx):
    if not d.field:
        yield "field", "must not be empty"


def _lint(d, ctx):
    if d.field.startswith("internal:"):
        yield Finding("field", "stamp-internal", "stamps agglo's own bookkeeping")


SPEC = ProcessSpec(kind="stamp", proto_field=100, model=Stamp, compile=StampStage, summary="Stamps events.",
                   doc="stamp events.\\n\\n```json\\n{\\"stamp\\": {\\"name\\": \\"S\\", \\"field\\": \\"f\\"}}\\n```\\n",
                   check=_check, lint=_lint, describe=lambda d: [f"{d.field} = true"])
'''


@pytest.fixture
def stamp_module(tmp_path: Path):  # type: ignore[no-untyped-def]
    import agglo_core.processes as processes

    (tmp_path / "stamp.py").write_text(textwrap.dedent(STAMP))
    caches = (processes.specs, processes.definition_model, processes.config_model)
    processes.__path__.append(str(tmp_path))
    for c in caches:
        c.cache_clear()
    yield
    processes.__path__.remove(str(tmp_path))
    sys.modules.pop("agglo_core.processes.stamp", None)
    for c in caches:
        c.cache_clear()


def _visible(event: dict) -> dict:
    return {k: v for k, v in event.items() if not k.startswith("internal:")}


@pytest.mark.usefixtures("stamp_module")
def test_a_new_process_type_is_one_module() -> None:
    from handlers.authoring.graph import build
    from handlers.authoring.reference import process_reference

    stamp = {"stamp": {"name": "S", "field": "seen", "condition": "n > 1"}}
    plan = compile_plan(config([stamp]))
    [small, big] = plan.run([Record("a", {"n": 1}), Record("b", {"n": 2})], 0, lambda effects: [])
    assert [_visible(e) for _, e in small.outputs] == [{"n": 1}]
    assert [_visible(e) for _, e in big.outputs] == [{"n": 2, "seen": True}]
    assert "processDefinitions[0].stamp.field: must not be empty" in problems(config([{"stamp": {"name": "S"}}]))
    warned = lint(load_config(config([{"stamp": {"name": "S", "field": "internal:x"}}])), lambda p: True)
    assert [(f.path, f.rule) for f in warned] == [("processDefinitions[0].stamp.field", "stamp-internal")]
    assert any(n.lines == ["S", "(stamp)", "seen = true"] for n in build(load_config(config([stamp]))).nodes.values())
    assert "`stamp` | Stamps events." in process_reference()
    assert "stamp" in config_model().model_json_schema()["$defs"]["ProcessDefinition"]["properties"]


# --- error messages quote the value and the choices ---------------------------------------------------------

ENUMS = [
    (ComparatorOperator, "a comparator", lambda v: config(
        [{"continuation": {"name": "C", "condition": {"expression": {"comparator": {
            "lhs": {"numeric": 1}, "rhs": {"numeric": 1}, "op": v}}}}}]),
     "processDefinitions[0].continuation.condition.expression.comparator.op"),
    (LogicalOperator, "a logical operator", lambda v: config(
        [{"continuation": {"name": "C", "condition": {"expression": {"logical": {
            "lhs": {"numeric": 1}, "rhs": {"numeric": 1}, "op": v}}}}}]),
     "processDefinitions[0].continuation.condition.expression.logical.op"),
    (ExistsOperator, "an exists operator", lambda v: config(
        [{"continuation": {"name": "C", "condition": {"exists": {"ops": [{"key": "a", "op": v}]}}}}]),
     "processDefinitions[0].continuation.condition.exists.ops[0].op"),
    (AggregationType, "an aggregation type", lambda v: config(
        [{"aggregator": {"name": "A", "stateStore": "S", "aggregation": {"key": "k", "aggregationType": v}}}],
        externals=[{"name": "S", "externalType": "ExternalKVStore", "connectionString": "mem:s"}]),
     "processDefinitions[0].aggregator.aggregation.aggregationType"),
    (TransformationType, "a transformation type", lambda v: config(
        [{"transformer": {"name": "T", "specs": [{"transformation": {"transformationType": v}}]}}]),
     "processDefinitions[0].transformer.specs[0].transformation.transformationType"),
    (ExternalType, "an external type", lambda v: config(
        [{"continuation": {"name": "C"}}], externals=[{"name": "X", "externalType": v, "connectionString": "mem:x"}]),
     "externalSystems[0].externalType"),
]


@pytest.mark.parametrize(("enum", "what", "make", "path"), ENUMS, ids=[e[0].__name__ for e in ENUMS])
@given(value=st.one_of(st.text(max_size=12), st.integers(min_value=-5, max_value=1000)))
def test_a_bad_enum_value_is_quoted_with_the_choices_and_no_sentinel(enum, what, make, path, value) -> None:  # type: ignore[no-untyped-def]
    members = {m.value for m in enum} | {m.number for m in enum}
    if value in members:
        return
    [problem] = [p for p in problems(make(value)) if p.startswith(path + ":")]
    offered = [m.value for m in enum if m.number]
    assert problem == f"{path}: {value!r} is not {what}; expected one of {', '.join(offered)}"
    assert not any(m.value in problem for m in enum if not m.number)


def test_a_value_of_the_wrong_type_is_quoted() -> None:
    data = config([{"filter": {"name": "F", "regex": "a", "keepMatched": "yes"}}])
    assert problems(data) == ['processDefinitions[0].filter.keepMatched: Input should be a valid boolean, '
                              'got "yes"']


# --- lint: what agglo ignores ---------------------------------------------------------------------------------


def test_lint_says_which_binge_fields_agglo_ignores() -> None:
    data = config([{"aggregator": {"name": "A", "stateStore": "S", "asyncCheckpoint": True,
                                   "aggregation": {"key": "k", "aggregationType": "AggSum"}}}],
                  externals=[{"name": "S", "externalType": "ExternalKVStore", "connectionString": "mem:s"}])
    data["pipelines"][0].update({"enableMetrics": True, "checkpoint": {"outputConnectorRef": "S"}})
    found = {(f.path, f.rule) for f in lint(load_config(data), lambda p: True)}
    assert found == {("processDefinitions[0].aggregator.asyncCheckpoint", "ignored-field"),
                     ("pipelines[0].enableMetrics", "ignored-field"), ("pipelines[0].checkpoint", "ignored-field")}
    data["pipelines"][0].update({"enableMetrics": False, "checkpoint": None})
    del data["processDefinitions"][0]["aggregator"]["asyncCheckpoint"]
    assert lint(load_config(data), lambda p: True) == []


def test_entwine_names_its_key_and_ticker_in_validation_not_at_compile_time() -> None:
    kv = {"name": "KV", "externalType": "ExternalKVStore", "connectionString": "mem:kv"}
    objects = {"name": "O", "externalType": "ExternalObjectStore", "connectionString": "mem:o"}
    data = config([{"entwine": {"name": "E", "streamStateStore": "KV", "objectStore": "O", "subStreamID": "s"}}],
                  externals=[kv, objects])
    assert problems(data) == ["processDefinitions[0].entwine.pemPath: must name a PEM private key file",
                              "processDefinitions[0].entwine.tickerEndpoint: must name the ticker (host:port or a URL)"]
