"""The shapes generated code recognises in a config stand for exactly what the general code does."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st
from test_codegen import EXTERNALS, PARTITION, batches_of, run_both

from agglo_core import regex
from agglo_core.stages.filter import exact_key

# The characters a key can hold that a pattern treats specially, beside plain ones and newlines (RE2's ``$``
# is the end of the text, not the end of a line).
KEY_ALPHABET = st.sampled_from(["a", "b", ":", " ", "\n", "é", "𝄞", ".", "$", "^", "*", "(", ")", "|", "\\"])
PATTERNS = st.builds(lambda head, body, tail: head + body + tail, st.sampled_from(["^", "", "(?i)^"]),
                     st.text(KEY_ALPHABET, min_size=1, max_size=4), st.sampled_from(["$", "", "$x", "\n$"]))


@settings(max_examples=500, deadline=None)
@given(PATTERNS, st.text(KEY_ALPHABET, max_size=5))
def test_a_patterns_exact_key_is_the_only_key_it_matches(pattern: str, key: str) -> None:
    try:
        compiled = regex.compile(pattern)
    except regex.RegexError:
        return
    exact = exact_key(pattern)
    if exact is not None:
        assert (compiled.search(key) is not None) == (key == exact)
        assert compiled.search(exact) is not None


def test_exact_keys_are_recognised() -> None:
    assert exact_key("^someString$") == "someString"
    assert exact_key("^internal:name$") == "internal:name"
    assert exact_key("^some.*$") is None and exact_key("^(a|b)$") is None and exact_key("someString") is None


# --- fields read ahead: processes that read, write and read again the same few fields ---------------------

FEW = ["a", "b", "c", "d.e"]
"""Few fields, so that what one process writes the next often reads."""


def _field_conditions() -> st.SearchStrategy[dict | None]:
    var = st.sampled_from(FEW).map(lambda f: {"variable": {"name": f}})
    compare = st.builds(lambda lhs, op, rhs: {"expression": {"comparator": {"lhs": lhs, "op": op, "rhs": rhs}}},
                        var, st.sampled_from(["Equal", "NotEqual", "GreaterThan"]),
                        st.sampled_from([{"literal": "x"}, {"numeric": 1}, {"literal": "set"}]))
    exists = st.builds(lambda f, op: {"exists": {"ops": [{"key": f, "op": op}]}}, st.sampled_from(FEW),
                       st.sampled_from(["Exists", "NotExists"]))
    return st.none() | compare | exists


def _field_processes(name: str) -> st.SearchStrategy[dict]:
    annotation = st.builds(lambda key, value, cond: {"fieldKey": key, "value": value,
                                                     **({"condition": cond} if cond else {})},
                           st.sampled_from(FEW), st.sampled_from(["x", "set"]), _field_conditions())
    transformation = st.builds(
        lambda t, cond: {**t, **({"condition": cond} if cond else {})},
        st.sampled_from([{"transformationType": "TransformCopy"},
                         {"transformationType": "TransformMapAdd", "mapAddArgs": {"value": 1}}]),
        _field_conditions())
    spec = st.builds(lambda s, t, tr: {"sourceField": s, "targetField": t, "transformation": tr},
                     st.sampled_from(FEW), st.sampled_from(FEW), transformation)
    return st.one_of(
        st.builds(lambda a: {"annotator": {"name": name, "annotations": a}}, st.lists(annotation, max_size=3)),
        st.builds(lambda c: {"continuation": {"name": name, **({"condition": c} if c else {})}},
                  _field_conditions()),
        st.builds(lambda r: {"filter": {"name": name, "regex": r, "keepMatched": False}},
                  st.sampled_from(["^a$", "^b$", "^e$"])),
        st.builds(lambda s, fwd: {"transformer": {"name": name, "specs": s, "forwardInputFields": fwd}},
                  st.lists(spec, min_size=1, max_size=3), st.booleans()),
    )


@st.composite
def _field_configs(draw: st.DrawFn) -> dict:
    n = draw(st.integers(2, 7))
    definitions = [draw(_field_processes(f"p{i}")) for i in range(n)]
    return {"partitionUuid": PARTITION, "externalSystems": EXTERNALS, "processDefinitions": definitions,
            "pipelines": [{"name": "fields", "processes": [{"name": f"p{i}"} for i in range(n)]}]}


_FIELD_VALUES = st.sampled_from(["x", "set", 0, 1, 2.5, None, {"e": 1}, [1]])
_field_events = st.fixed_dictionaries({}, optional={"a": _FIELD_VALUES, "b": _FIELD_VALUES, "c": _FIELD_VALUES,
                                                    "d": st.fixed_dictionaries({}, optional={"e": _FIELD_VALUES})})


@settings(max_examples=300, deadline=None)
@given(config=_field_configs(),
       payloads=st.lists(st.lists(_field_events, min_size=1, max_size=3), min_size=1, max_size=2),
       now=st.integers(0, 2 ** 41))
def test_fields_read_ahead_are_read_again_after_any_write(config: dict, payloads: list[list[dict]],
                                                          now: int) -> None:
    run_both(config, batches_of(payloads), now)


def _generated_in(stage: object) -> set[str]:
    """The generated functions a stage holds, by the file name their code reports."""
    return {v.__code__.co_filename for v in vars(stage).values()
            if hasattr(v, "__code__") and v.__code__.co_filename.startswith("<agglo ")}


def test_effectful_stages_run_generated_preludes_and_the_reference_none() -> None:
    from test_properties import KITCHEN

    from agglo_core import compile_plan

    generated, interpreted = compile_plan(KITCHEN), compile_plan(KITCHEN, codegen=False)
    kinds = {"aggregator", "tee", "completer"}
    preludes = {f for p in generated.pipelines for s in p.stages for f in _generated_in(s)}
    assert {f.split()[1] for f in preludes} >= kinds
    assert not any(_generated_in(s) for p in interpreted.pipelines for s in p.stages)
