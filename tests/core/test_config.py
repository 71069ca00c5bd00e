"""Loading and validating configs: ``agglo_core.load_config`` and ``ConfigError``."""

from __future__ import annotations

import json
import pathlib
from collections import Counter
from typing import Any

import pytest

from agglo_core import ConfigError, PipelinesConfig, load_config
from agglo_core.conditions import compile_condition
from agglo_core.config import (
    AggregationType,
    BinaryOperator,
    ComparatorOperator,
    Condition,
    ExistsOperator,
    ExternalType,
    LogicalOperator,
    TransformationType,
    UnaryOperator,
)

BINGE_CONFIGS = sorted((pathlib.Path(__file__).parent.parent / "fixtures" / "binge" / "configs").glob("*.json"))
PARTITION = "c5024ca8-d601-499f-bb24-daae74357b5e"

# --- builders ----------------------------------------------------------------------------------------


def ext(name: str, kind: str = "ExternalKVStore", cs: str = "mem:x") -> dict:
    return {"name": name, "externalType": kind, "connectionString": cs}


def tee(name: str, out: str = "Bus", transformer: str = "", **more: Any) -> dict:
    return {"tee": {"name": name, "outputConnectorRef": out, "transformerRef": transformer, **more}}


def filter_(name: str, regex: str = "x") -> dict:
    return {"filter": {"name": name, "regex": regex, "keepMatched": True}}


def transformation(**fields: Any) -> dict:
    return {"sourceField": "a", "targetField": "b", "transformation": fields}


COPY = transformation(transformationType="TransformCopy")


def transformer(name: str, *specs: dict) -> dict:
    return {"transformer": {"name": name, "specs": list(specs or [COPY])}}


def map_regex(regex: str, replace: str) -> dict:
    return transformation(transformationType="TransformMapRegex", mapRegexArgs={"regex": regex, "replace": replace})


def aggregator(name: str, store: str = "State") -> dict:
    return {"aggregator": {"name": name, "stateStore": store,
                           "aggregation": {"key": "n", "aggregationType": "AggSum"}}}


def completer(name: str, store: str = "State") -> dict:
    return {"completer": {"name": name, "stateStore": store,
                          "completion": {"joinKeys": ["a", "b"], "timeoutMs": 1000}}}


def annotator(name: str, condition: dict | None = None, **annotation: Any) -> dict:
    one = {"fieldKey": "k", "value": "v", **annotation}
    if condition is not None:
        one["condition"] = condition
    return {"annotator": {"name": name, "annotations": [one]}}


def regex_condition(pattern: str, op: str = "RegexMatch") -> dict:
    return {"expression": {"comparator": {"op": op, "lhs": {"variable": {"name": "s"}},
                                          "rhs": {"literal": pattern}}}}


EXTERNALS = [ext("State"), ext("Bus", "ExternalPubSub"), ext("Web", "ExternalHttp", "http://localhost:1")]


def config(*definitions: dict, externals: list[dict] | None = None, run: list[str] = (), **top: Any) -> dict:
    """A config over ``definitions`` and ``externals``, with one pipeline running ``run`` if given."""
    return {
        "partitionUuid": PARTITION,
        "pipelines": [{"name": "P", "processes": [{"name": n} for n in run]}] if run else [],
        "processDefinitions": list(definitions),
        "externalSystems": EXTERNALS if externals is None else externals,
        **top,
    }


def problems(data: Any) -> list[str]:
    with pytest.raises(ConfigError) as raised:
        load_config(data)
    assert raised.value.problems, "a ConfigError must list its problems"
    return raised.value.problems


def path_of(problem: str) -> str:
    return problem.split(": ", 1)[0]


def only_problem(data: Any) -> str:
    found = problems(data)
    assert len(found) == 1, found
    return found[0]


def assert_loads(data: Any) -> PipelinesConfig:
    try:
        return load_config(data)
    except ConfigError as e:  # pragma: no cover - shows every problem on failure
        pytest.fail(f"config should load, got: {e.problems}")


# --- binge's configs -----------------------------------------------------------------------------------


def test_binge_configs_are_present() -> None:
    assert len(BINGE_CONFIGS) >= 8, BINGE_CONFIGS


@pytest.mark.parametrize("path", BINGE_CONFIGS, ids=[p.name for p in BINGE_CONFIGS])
def test_binge_config_loads_unchanged(path: pathlib.Path) -> None:
    text = path.read_text()
    raw = json.loads(text)
    from_text, from_bytes, from_dict = assert_loads(text), assert_loads(path.read_bytes()), assert_loads(raw)
    assert from_text == from_bytes == from_dict
    # Nothing is dropped or reinterpreted: the model dumps back to the file's content.
    assert from_text.model_dump(mode="json", exclude_unset=True) == raw
    assert len(from_text.processDefinitions) == len(raw.get("processDefinitions", []))
    for pipeline in from_text.pipelines:
        for process in pipeline.processes:
            assert from_text.process(process.name).name == process.name


def test_binge_basic_pipeline_details() -> None:
    config = load_config(next(p for p in BINGE_CONFIGS if p.name == "basic__basic_pipeline.json").read_text())
    assert config.partitionUuid == "c5024ca8-d601-499f-bb24-daae74357b5e"
    assert [p.name for p in config.pipelines[0].processes] == [
        "BeforeTee", "AnnotateFooBar", "SumSomeNum", "RemovePrefix", "AfterTee"]
    kinds = {d.name: d.kind for d in config.processDefinitions}
    assert kinds["AnnotateFooBar"] == "annotator"
    assert kinds["BeforeTee"] == "tee"


# --- valid configs ----------------------------------------------------------------------------------------


def test_a_valid_config_loads() -> None:
    loaded = assert_loads(config(tee("T", transformer="X"), transformer("X"), filter_("F", "^a+$"),
                                 aggregator("A"), completer("C"), run=["T", "F", "A", "C"]))
    assert loaded.partitionUuid == PARTITION
    assert [d.kind for d in loaded.processDefinitions] == ["tee", "transformer", "filter", "aggregator",
                                                          "completer"]
    assert loaded.external("Bus").externalType is ExternalType.ExternalPubSub
    assert loaded.process("T").tee.transformerRef == "X"


@pytest.mark.parametrize("order", [
    ["processDefinitions", "externalSystems", "pipelines", "partitionUuid"],
    ["pipelines", "processDefinitions", "externalSystems", "partitionUuid"],
    ["externalSystems", "partitionUuid", "processDefinitions", "pipelines"],
])
def test_definition_order_does_not_matter(order: list[str]) -> None:
    # The tee comes before the transformer and the external system it names; the aggregator before its store.
    data = config(tee("T", out="LateBus", transformer="LateX"), aggregator("A", store="LateState"),
                  transformer("LateX"),
                  externals=[ext("LateBus", "ExternalPubSub"), ext("LateState")], run=["T", "A", "LateX"])
    reordered = {key: data[key] for key in order}
    loaded = assert_loads(reordered)
    assert assert_loads(json.dumps(reordered)) == loaded
    assert loaded.process("T").tee.outputConnectorRef == "LateBus"
    assert [p.name for p in loaded.pipelines[0].processes] == ["T", "A", "LateX"]


# --- problems and their paths -------------------------------------------------------------------------


def test_config_error_lists_problems_with_paths() -> None:
    error = ConfigError(["a.b: first", "c[0]: second"])
    assert isinstance(error, ValueError)
    assert error.problems == ["a.b: first", "c[0]: second"]
    assert "a.b: first" in str(error) and "c[0]: second" in str(error)


def test_tee_naming_an_undefined_external_has_the_documented_message() -> None:
    data = config(filter_("F0"), filter_("F1"), filter_("F2"), tee("T", out="Foo"))
    assert only_problem(data) == "processDefinitions[3].tee.outputConnectorRef: no external system named 'Foo'"


@pytest.mark.parametrize(("data", "path"), [
    pytest.param({**config(filter_("F")), "bogus": 1}, "bogus", id="top-level"),
    pytest.param(config(filter_("F"), externals=[{**ext("State"), "port": 1}]), "externalSystems[0].port",
                 id="external"),
    pytest.param(config(tee("T", colour="red")), "processDefinitions[0].tee.colour", id="tee"),
    pytest.param(config({"sorter": {"name": "S"}}), "processDefinitions[0].sorter", id="process-kind"),
    pytest.param(config(annotator("N", extra=True)), "processDefinitions[0].annotator.annotations[0].extra",
                 id="annotation"),
    pytest.param(config(annotator("N", {"expression": {"comparator": {
        "op": "Equal", "lhs": {"variable": {"name": "x", "path": "y"}}, "rhs": {"numeric": 1}}}})),
        "processDefinitions[0].annotator.annotations[0].condition.expression.comparator.lhs.variable.path",
        id="deep-in-a-condition"),
    pytest.param(config(transformer("X", transformation(transformationType="TransformCopy", speed=2))),
                 "processDefinitions[0].transformer.specs[0].transformation.speed", id="transformation"),
    pytest.param({**config(filter_("F")), "pipelines": [
        {"name": "P", "processes": [{"name": "F", "retryStrategy": {"numRetries": 1, "jitter": 3}}]}]},
        "pipelines[0].processes[0].retryStrategy.jitter", id="retry-strategy"),
    pytest.param({**config(filter_("F")), "pipelines": [{"name": "P", "processes": [{"name": "F"}], "x": 1}]},
                 "pipelines[0].x", id="pipeline"),
])
def test_unknown_fields_are_reported(data: dict, path: str) -> None:
    problem = only_problem(data)
    assert path_of(problem) == path
    assert "unknown field" in problem


@pytest.mark.parametrize(("data", "path"), [
    pytest.param(config(filter_("F"), externals=[ext("S", "ExternalFloppy")]), "externalSystems[0].externalType",
                 id="external-type"),
    pytest.param(config(filter_("F"), externals=[ext("S", 42)]), "externalSystems[0].externalType",
                 id="external-type-number"),
    pytest.param(config({"aggregator": {"name": "A", "stateStore": "State",
                                        "aggregation": {"key": "n", "aggregationType": "AggMedian"}}}),
                 "processDefinitions[0].aggregator.aggregation.aggregationType", id="aggregation-type"),
    pytest.param(config(transformer("X", transformation(transformationType="TransformReverse"))),
                 "processDefinitions[0].transformer.specs[0].transformation.transformationType",
                 id="transformation-type"),
    pytest.param(config(annotator("N", regex_condition("x", op="Similar"))),
                 "processDefinitions[0].annotator.annotations[0].condition.expression.comparator.op",
                 id="comparator"),
    pytest.param(config(annotator("N", {"exists": {"ops": [{"key": "a", "op": "Maybe"}]}})),
                 "processDefinitions[0].annotator.annotations[0].condition.exists.ops[0].op", id="exists"),
    pytest.param(config(annotator("N", {"expression": {"unary": {"op": 1, "rhs": {"numeric": 1}}}})),
                 "processDefinitions[0].annotator.annotations[0].condition.expression.unary.op",
                 id="unary-number-not-in-enum"),
    pytest.param(config(annotator("N", {"expression": {"logical": {
        "op": "LogicalXor", "lhs": {"numeric": 1}, "rhs": {"numeric": 1}}}})),
        "processDefinitions[0].annotator.annotations[0].condition.expression.logical.op", id="logical"),
    pytest.param(config(annotator("N", {"expression": {"comparator": {"op": "Equal", "rhs": {"numeric": 1},
                                                                      "lhs": {"expression": {"binary": {
                                                                          "op": "Concat", "lhs": {"numeric": 1},
                                                                          "rhs": {"numeric": 1}}}}}}})),
                 "processDefinitions[0].annotator.annotations[0].condition.expression.comparator.lhs"
                 ".expression.binary.op", id="binary-nested"),
    pytest.param(config(annotator("N", regex_condition("x", op=True))),
                 "processDefinitions[0].annotator.annotations[0].condition.expression.comparator.op",
                 id="boolean-is-not-an-enum-number"),
    pytest.param(config(annotator("N", regex_condition("x", op="equal"))),
                 "processDefinitions[0].annotator.annotations[0].condition.expression.comparator.op",
                 id="names-are-case-sensitive"),
])
def test_unknown_enum_values_are_reported(data: dict, path: str) -> None:
    assert path_of(only_problem(data)) == path


ENUMS = [ExternalType, AggregationType, TransformationType, ExistsOperator, UnaryOperator, BinaryOperator,
         LogicalOperator, ComparatorOperator]
PROTO_NUMBERS = {  # from binge's pipeline.proto
    "ExternalKVStore": 1, "ExternalPubSub": 3, "ExternalHttp": 4, "AggSum": 1, "AggDiscreteHistogram": 6,
    "TransformMapRegex": 3, "TransformMap": 9, "Exists": 1, "NotExists": 2, "Negation": 3, "Inversion": 4,
    "LogicalNot": 5,
    "Addition": 6, "Xor": 16, "LogicalAnd": 17, "LogicalOr": 18, "GreaterThan": 19, "Equal": 23,
    "RegexNotMatch": 26,
}


@pytest.mark.parametrize("enum", ENUMS, ids=lambda e: e.__name__)
def test_enums_accept_names_and_proto_numbers(enum: Any) -> None:
    for member in enum:
        assert enum(member.value) is member
        assert enum(member.number) is member
        if member.value in PROTO_NUMBERS:
            assert member.number == PROTO_NUMBERS[member.value]


@pytest.mark.parametrize(("name", "number"), [("GreaterThan", 19), ("LessThan", 20), ("Equal", 23),
                                              ("RegexMatch", 25)])
def test_a_condition_spelled_with_numbers_equals_one_spelled_with_names(name: str, number: int) -> None:
    def spelled(op: Any) -> dict:
        return {"expression": {"comparator": {"op": op, "lhs": {"variable": {"name": "x"}},
                                              "rhs": {"literal": "m"}}}}

    assert Condition.model_validate(spelled(name)) == Condition.model_validate(spelled(number))
    by_name = compile_condition(Condition.model_validate(spelled(name)))
    by_number = compile_condition(Condition.model_validate(spelled(number)))
    assert by_name is not None and by_number is not None
    for x in ("a", "m", "z", "xmx"):
        assert by_name({"x": x}) is by_number({"x": x})


def test_enum_numbers_load_in_a_whole_config() -> None:
    externals = [ext("State"), ext("Web", "ExternalHttp")]
    data = config(aggregator("A"), tee("T", out="Web"), externals=[{**e, "externalType": n}
                                                                  for e, n in zip(externals, (1, 4), strict=True)])
    data["processDefinitions"][0]["aggregator"]["aggregation"]["aggregationType"] = 1
    loaded = assert_loads(data)
    assert loaded.external("State").externalType is ExternalType.ExternalKVStore
    assert loaded.external("Web").externalType is ExternalType.ExternalHttp
    assert loaded.process("A").aggregator.aggregation.aggregationType is AggregationType.AggSum
    assert loaded == assert_loads(config(aggregator("A"), tee("T", out="Web"), externals=externals))


def test_duplicate_process_names() -> None:
    problem = only_problem(config(filter_("Same"), tee("Other"), filter_("Same"), run=["Same", "Other"]))
    assert problem == "processDefinitions[2].filter.name: duplicate process name 'Same'"


def test_duplicate_process_names_across_kinds() -> None:
    problem = only_problem(config(filter_("Same"), tee("Same"), run=["Same"]))
    assert path_of(problem) == "processDefinitions[1].tee.name"
    assert "'Same'" in problem


def test_duplicate_external_names() -> None:
    problem = only_problem(config(filter_("F"), externals=[*EXTERNALS, ext("Bus")]))
    assert problem == "externalSystems[3].name: duplicate external system name 'Bus'"


def test_pipeline_naming_an_undefined_process() -> None:
    problem = only_problem(config(filter_("F"), run=["F", "Ghost"]))
    assert problem == "pipelines[0].processes[1].name: no process definition named 'Ghost'"


def test_a_pipeline_naming_an_invalid_definition_reports_only_the_definition() -> None:
    # "T" is defined, just wrongly: saying the pipeline names no process "T" would be a second, false problem.
    found = problems(config(tee("T", colour="red"), filter_("F"), run=["T", "F"]))
    assert [path_of(p) for p in found] == ["processDefinitions[0].tee.colour"]


def test_tee_naming_an_undefined_transformer() -> None:
    problem = only_problem(config(tee("T", transformer="Nope")))
    assert path_of(problem) == "processDefinitions[0].tee.transformerRef"
    assert "'Nope'" in problem


def test_tee_naming_a_process_that_is_not_a_transformer() -> None:
    problem = only_problem(config(filter_("F"), tee("T", transformer="F")))
    assert path_of(problem) == "processDefinitions[1].tee.transformerRef"
    assert "'F'" in problem and "filter" in problem


@pytest.mark.parametrize("build", [aggregator, completer])
@pytest.mark.parametrize(("store", "mentions"), [("Bus", "ExternalPubSub"), ("Web", "ExternalHttp"),
                                                 ("Missing", "'Missing'"), ("", "")])
def test_stateful_process_needs_a_kv_store(build: Any, store: str, mentions: str) -> None:
    data = config(build("S", store=store))
    problem = only_problem(data)
    assert path_of(problem) == f"processDefinitions[0].{next(iter(data['processDefinitions'][0]))}.stateStore"
    assert mentions in problem


@pytest.mark.parametrize("build", [aggregator, completer])
def test_stateful_process_with_a_kv_store_loads(build: Any) -> None:
    assert_loads(config(build("S", store="State")))


@pytest.mark.parametrize("partition", ["not-a-uuid", "", "c5024ca8-d601-499f-bb24", "c5024ca8-d601-499f-bb24-"
                                       "daae74357b5e-ffff", "g5024ca8-d601-499f-bb24-daae74357b5e", 123, None])
def test_bad_partition_uuid(partition: Any) -> None:
    problem = only_problem({**config(filter_("F")), "partitionUuid": partition})
    assert path_of(problem) == "partitionUuid"


@pytest.mark.parametrize("partition", ["938e16fe-a216-4fe1-92bd-dcab49646fb9", "938E16FE-A216-4FE1-92BD-DCAB49646FB9"])
def test_good_partition_uuid(partition: str) -> None:
    assert assert_loads({**config(filter_("F")), "partitionUuid": partition}).partitionUuid == partition


BAD_REGEXES = ["(", "a[b", "*x", "x{2,1}", "\\",
               # Python's re takes these; RE2, binge's dialect, cannot express them
               "(a)\\1", "(?=a)b", "(?<!a)b", "a\\Z", "a{1001}"]


@pytest.mark.parametrize("regex", BAD_REGEXES)
@pytest.mark.parametrize(("build", "path"), [
    (lambda r: config(filter_("F", r)), "processDefinitions[0].filter.regex"),
    (lambda r: config(transformer("X", COPY, map_regex(r, "y"))),
     "processDefinitions[0].transformer.specs[1].transformation.mapRegexArgs.regex"),
    (lambda r: config(annotator("N", regex_condition(r))),
     "processDefinitions[0].annotator.annotations[0].condition.expression.comparator.rhs.literal"),
    (lambda r: config(tee("T", condition=regex_condition(r, op="RegexNotMatch"))),
     "processDefinitions[0].tee.condition.expression.comparator.rhs.literal"),
    (lambda r: config(tee("T", condition={"expression": {"logical": {
        "op": "LogicalOr", "lhs": {"expression": {"boolean": {"value": False}}},
        "rhs": {"expression": regex_condition(r)["expression"]}}}})),
     "processDefinitions[0].tee.condition.expression.logical.rhs.expression.comparator.rhs.literal"),
], ids=["filter", "map-regex", "regex-match", "regex-not-match", "nested-regex-match"])
def test_bad_regex(build: Any, path: str, regex: str) -> None:
    problem = only_problem(build(regex))
    assert path_of(problem) == path
    assert "regex" in problem


@pytest.mark.parametrize(("regex", "replace"), [
    ("(a)", "$2"),
    ("(a)", "${2}"),
    ("a", "$1"),
    ("(?P<word>a)", "${other}"),
    ("(?P<word>a)", "$other"),
    ("(a)(b)", "$1-$3"),
])
def test_replace_referring_to_a_missing_group(regex: str, replace: str) -> None:
    problem = only_problem(config(transformer("X", map_regex(regex, replace))))
    assert path_of(problem) == "processDefinitions[0].transformer.specs[0].transformation.mapRegexArgs.replace"


@pytest.mark.parametrize(("regex", "replace"), [
    ("(a)", "$1"),
    ("(a)", "${1}x"),
    ("(a)", "$0"),
    ("(a)", "$$2 costs"),  # $$ is a literal dollar
    ("(?P<word>a)", "${word}"),
    ("(?P<word>a)", "$word"),
    ("(?P<word>a)", "$1"),
    ("a", "no references"),
    ("(a)(b)(c)(d)(e)(f)(g)(h)(i)(j)", "$10"),
])
def test_replace_referring_to_existing_groups(regex: str, replace: str) -> None:
    assert_loads(config(transformer("X", map_regex(regex, replace))))


@pytest.mark.parametrize(("data", "path"), [
    pytest.param(config({**filter_("F"), **tee("T")}), "processDefinitions[0]", id="two-kinds"),
    pytest.param(config({}), "processDefinitions[0]", id="no-kind"),
    pytest.param(config(annotator("N", {"expression": {"boolean": {"value": True}},
                                        "exists": {"ops": [{"key": "a", "op": "Exists"}]}})),
                 "processDefinitions[0].annotator.annotations[0].condition", id="condition"),
    pytest.param(config(annotator("N", {"expression": {"boolean": {"value": True},
                                                       "unary": {"op": "LogicalNot",
                                                                 "rhs": {"numeric": 1}}}})),
                 "processDefinitions[0].annotator.annotations[0].condition.expression", id="expression"),
    pytest.param(config(annotator("N", {"expression": {"comparator": {
        "op": "Equal", "lhs": {"literal": "1", "numeric": 1}, "rhs": {"numeric": 1}}}})),
        "processDefinitions[0].annotator.annotations[0].condition.expression.comparator.lhs", id="operand"),
    pytest.param(config(transformer("X", transformation(transformationType="TransformMapAdd",
                                                        mapAddArgs={"value": 1}, mapMultArgs={"value": 2}))),
                 "processDefinitions[0].transformer.specs[0].transformation", id="transformation-args"),
])
def test_oneof_violations(data: dict, path: str) -> None:
    problem = only_problem(data)
    assert path_of(problem) == path
    assert "exactly one" in problem


# --- many problems at once ---------------------------------------------------------------------------


def test_every_problem_is_reported_in_one_error() -> None:
    data = {
        "partitionUuid": "nope",
        "color": "blue",
        "externalSystems": [ext("State"), ext("Bus", "ExternalPubSub"), ext("Odd", "ExternalTape")],
        "processDefinitions": [
            tee("T0", out="Foo"),
            tee("T1", transformer="NoSuch"),
            tee("T2", transformer="F3"),
            filter_("F3", "(unclosed"),
            aggregator("A4", store="Bus"),
            completer("C5", store="Nowhere"),
            filter_("F3"),
            {**filter_("Two"), **annotator("Kinds")},
            annotator("N8", extra=1),
            transformer("X9", map_regex("a(b", "x"), map_regex("(a)", "$2")),
            annotator("N10", regex_condition("[")),
            {"aggregator": {"name": "A11", "stateStore": "State",
                            "aggregation": {"key": "n", "aggregationType": "AggBogus"}}},
        ],
        "pipelines": [{"name": "P", "processes": [{"name": "T0"}, {"name": "Ghost"}, {"name": "F3"}]}],
    }
    found = problems(data)
    expected = [
        "color",
        "partitionUuid",
        "externalSystems[2].externalType",
        "processDefinitions[0].tee.outputConnectorRef",
        "processDefinitions[1].tee.transformerRef",
        "processDefinitions[2].tee.transformerRef",
        "processDefinitions[3].filter.regex",
        "processDefinitions[4].aggregator.stateStore",
        "processDefinitions[5].completer.stateStore",
        "processDefinitions[6].filter.name",
        "processDefinitions[7]",
        "processDefinitions[8].annotator.annotations[0].extra",
        "processDefinitions[9].transformer.specs[0].transformation.mapRegexArgs.regex",
        "processDefinitions[9].transformer.specs[1].transformation.mapRegexArgs.replace",
        "processDefinitions[10].annotator.annotations[0].condition.expression.comparator.rhs.literal",
        "processDefinitions[11].aggregator.aggregation.aggregationType",
        "pipelines[0].processes[1].name",
    ]
    assert Counter(path_of(p) for p in found) == Counter(expected), found
    assert len(found) == len(expected) == 17
    assert "processDefinitions[0].tee.outputConnectorRef: no external system named 'Foo'" in found
    assert "processDefinitions[6].filter.name: duplicate process name 'F3'" in found
    assert "pipelines[0].processes[1].name: no process definition named 'Ghost'" in found


def test_problems_in_many_list_elements_are_all_reported() -> None:
    data = config(*[tee(f"T{i}", out=f"Missing{i}") for i in range(5)])
    found = problems(data)
    assert [path_of(p) for p in found] == [f"processDefinitions[{i}].tee.outputConnectorRef" for i in range(5)]
    assert [p.rsplit("'", 2)[1] for p in found] == [f"Missing{i}" for i in range(5)]


# --- malformed input ------------------------------------------------------------------------------------


@pytest.mark.parametrize("text", ["", "{", '{"partitionUuid": }', "not json", '{"a": 1,}', b"\xff\xfe"])
def test_invalid_json_text(text: str | bytes) -> None:
    problem = only_problem(text)
    assert "JSON" in problem


@pytest.mark.parametrize("data", ["[1, 2]", '"config"', "42", "null", [1], "true"])
def test_a_config_must_be_an_object(data: Any) -> None:
    only_problem(data)


@pytest.mark.parametrize("section", ["pipelines", "processDefinitions", "externalSystems"])
def test_sections_must_be_lists(section: str) -> None:
    problem = only_problem({**config(filter_("F")), section: {"name": "x"}})
    assert path_of(problem) == section


def test_json_text_and_dict_give_the_same_problems() -> None:
    data = config(tee("T", out="Foo"), filter_("F", "("), run=["T", "Ghost"])
    assert problems(json.dumps(data)) == problems(data)


# --- strictness about JSON types ----------------------------------------------------------------------


@pytest.mark.parametrize(("data", "path"), [
    pytest.param(config(annotator("N", {"expression": {"comparator": {
        "op": "Equal", "lhs": {"variable": {"name": "x"}}, "rhs": {"numeric": True}}}})),
        "processDefinitions[0].annotator.annotations[0].condition.expression.comparator.rhs.numeric",
        id="boolean-numeric"),
    pytest.param(config({"filter": {"name": "F", "regex": "x", "keepMatched": "yes"}}),
                 "processDefinitions[0].filter.keepMatched", id="string-boolean"),
    pytest.param(config(annotator("N", {"expression": {"comparator": {
        "op": "Equal", "lhs": {"variable": {"name": "x"}}, "rhs": {"literal": 5}}}})),
        "processDefinitions[0].annotator.annotations[0].condition.expression.comparator.rhs.literal",
        id="number-literal"),
    pytest.param(config({"filter": {"name": 7, "regex": "x"}}), "processDefinitions[0].filter.name",
                 id="number-name"),
])
def test_values_of_the_wrong_json_type_are_rejected(data: dict, path: str) -> None:
    assert path_of(only_problem(data)) == path


@pytest.mark.parametrize("number", [2**53 + 1, 2**63 + 1, 2**64 + 1, -(2**63) - 1, 10**30 + 7])
def test_numeric_literals_in_json_text_keep_their_precision(number: int) -> None:
    condition = {"expression": {"comparator": {"op": "Equal", "lhs": {"variable": {"name": "x"}},
                                               "rhs": {"numeric": number}}}}
    loaded = assert_loads(json.dumps(config(annotator("N", condition))))
    literal = loaded.process("N").annotator.annotations[0].condition.expression.comparator.rhs.numeric
    assert literal == number and type(literal) is int
    predicate = compile_condition(loaded.process("N").annotator.annotations[0].condition)
    assert predicate is not None
    assert predicate({"x": number}) is True
    assert predicate({"x": number - 1}) is False
