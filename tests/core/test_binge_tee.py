"""A tee's ``additionalBody`` merges as binge's merge does, and an HTTP tee's ``response`` is there only for a body.

Maps merge key by key, lists append (the event's items first), and two values at one path that are not both
maps or both lists fail the record, permanently, naming the path. Checked on generated events and bodies, for
the interpreted tee and the generated one alike.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from builders import NOW_MS, config, external
from fakes import MemoryWorld
from hypothesis import given
from hypothesis import strategies as st
from test_codegen import batches_of, run_both
from test_properties import SETTINGS

from agglo_core import Record, compile_plan

KEYS = ["a", "b", "tags", "meta"]  # few names, so events and bodies often meet at one path
scalars = (st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1)
           | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=4))
trees = st.recursive(scalars, lambda inner: st.lists(inner, max_size=3)
                     | st.dictionaries(st.sampled_from(KEYS), inner, max_size=3), max_leaves=12)
maps = st.dictionaries(st.sampled_from(KEYS), trees, max_size=4)

Path = tuple[str, ...]


def tee_config(extra: dict, transformer: dict | None = None) -> dict:
    tee = {"name": "Tee", "outputConnectorRef": "Out", "additionalBody": extra,
           "transformerRef": transformer["transformer"]["name"] if transformer else ""}
    return config({"tee": tee}, *([transformer] if transformer else []), order=["Tee"],
                  externals=(external("ExternalKVStore", "Out", "mem:out"),))


def tee_once(event: dict, extra: dict, transformer: dict | None = None,
             codegen: bool = True) -> tuple[Any, MemoryWorld]:
    """The outcome of the record ``event`` (in a batch of two, so the batch path runs) and the world after."""
    world = MemoryWorld()
    plan = compile_plan(tee_config(extra, transformer), codegen=codegen)
    [outcome, _] = plan.run([Record("r0", event), Record("r1", {"other": 1})], NOW_MS, world.perform)
    return outcome, world


def clashes(event: dict, extra: dict, at: Path = ()) -> Iterator[str]:
    """The paths where the two meet without both being maps or both lists (binge's merge fails there)."""
    for k, v in extra.items():
        if k not in event:
            continue
        mine = event[k]
        if type(mine) is dict and type(v) is dict:
            yield from clashes(mine, v, (*at, k))
        elif not (type(mine) is list and type(v) is list):
            yield ".".join((*at, k))


def leaves(tree: dict, at: Path = ()) -> Iterator[tuple[Path, Any]]:
    """(path, value) of every value reached through maps only: scalars, lists and empty maps."""
    for k, v in tree.items():
        if type(v) is dict and v:
            yield from leaves(v, (*at, k))
        else:
            yield (*at, k), v


def at_path(tree: dict, path: Path) -> Any:
    for k in path:
        tree = tree[k]
    return tree


def same(a: Any, b: Any) -> bool:
    return json.dumps(a) == json.dumps(b) and type(a) is type(b)


@SETTINGS
@given(event=maps, extra=maps)
def test_additional_body_merges_as_binge(event: dict, extra: dict) -> None:
    outcome, world = tee_once(event, extra)
    clash = set(clashes(event, extra))
    if clash:
        [error] = outcome.errors
        assert error.process == "Tee" and not error.transient
        assert any(f"'{p}'" in error.message for p in clash), error.message
        assert outcome.outputs == [] and [p.body["other"] for p in world.puts] == [1]  # only the other record's
        return
    assert outcome.errors == []
    [body] = [p.body for p in world.puts if p.body.get("other") is None]
    sent = {k: v for k, v in body.items() if not k.startswith("internal:")}
    for path, value in leaves(event):
        got = at_path(sent, path)
        if type(value) is list:  # the event's items first, then additionalBody's
            theirs = at_path(extra, path) if all_maps_to(extra, path) else []
            assert same(got, value + theirs)
        elif type(value) is dict:  # an empty map: additionalBody may fill it
            assert type(got) is dict
        else:
            assert same(got, value)
    for path, value in leaves(extra):
        got = at_path(sent, path)
        if type(value) is list:
            assert type(got) is list and same(got[len(got) - len(value):], value)
        elif type(value) is dict:
            assert type(got) is dict
        else:
            assert same(got, value)
    for path, _ in leaves(sent):  # nothing else
        assert all_maps_to(event, path) or all_maps_to(extra, path)


def all_maps_to(tree: dict, path: Path) -> bool:
    """``path`` exists in ``tree``, through maps."""
    for k in path:
        if type(tree) is not dict or k not in tree:
            return False
        tree = tree[k]
    return True


@SETTINGS
@given(payloads=st.lists(st.lists(maps, min_size=2, max_size=4), min_size=1, max_size=2), extra=maps,
       through_transformer=st.booleans())
def test_generated_tee_merges_as_the_interpreted_one(payloads: list[list[dict]], extra: dict,
                                                      through_transformer: bool) -> None:
    shape = {"transformer": {"name": "Shape", "forwardInputFields": True, "specs": [
        {"sourceField": "a", "targetField": "b", "transformation": {"transformationType": "TransformCopy"}}]}}
    run_both(tee_config(extra, shape if through_transformer else None), batches_of(payloads), NOW_MS)


def test_equal_scalars_clash_too() -> None:
    # binge's reference is silent on equal values; its merge refuses any two scalars at one path, and so do we
    outcome, world = tee_once({"n": 1, "meta": {"via": "tee"}}, {"meta": {"via": "tee"}})
    [error] = outcome.errors
    assert "'meta.via'" in error.message and "a string" in error.message and not error.transient


@pytest.mark.parametrize(("event", "extra", "where", "words"), [
    ({"tags": ["a"]}, {"tags": {"x": 1}}, "tags", "sets 'tags' to a map, but the body already has a list"),
    ({"meta": {"x": 1}}, {"meta": 2}, "meta", "sets 'meta' to a number, but the body already has a map"),
    ({"a": None}, {"a": [1]}, "a", "sets 'a' to a list, but the body already has null"),
])
def test_a_map_or_list_meeting_anything_else_fails_naming_the_path(event: dict, extra: dict, where: str,
                                                                    words: str) -> None:
    for codegen in (True, False):
        outcome, world = tee_once(event, extra, codegen=codegen)
        [error] = outcome.errors
        assert words in error.message and f"'{where}'" in error.message
        assert len(world.puts) == 1  # only the other record's


def test_maps_merge_and_lists_append() -> None:
    outcome, world = tee_once({"tags": ["a"], "n": 1, "meta": {"by": "ci", "seen": [1]}},
                              {"tags": ["b", "c"], "meta": {"via": "tee", "seen": [2]}, "new": True})
    assert outcome.errors == []
    body = world.puts[0].body
    assert {k: v for k, v in body.items() if not k.startswith("internal:")} == {
        "tags": ["a", "b", "c"], "n": 1, "meta": {"by": "ci", "seen": [1, 2], "via": "tee"}, "new": True}
    assert outcome.outputs[0][1]["tags"] == ["a"]  # the event itself goes on unchanged


def test_a_clash_after_a_transformer_is_the_merges_not_the_transformers() -> None:
    shape = {"transformer": {"name": "Shape", "specs": [
        {"sourceField": "n", "targetField": "total", "transformation": {"transformationType": "TransformSum"}}]}}
    clash, _ = tee_once({"n": [1, 2]}, {"total": 0}, shape)
    assert clash.errors[0].message.startswith("additionalBody sets 'total' to a number")
    wrong, _ = tee_once({"n": "text"}, {"other": 0}, shape)
    assert wrong.errors[0].message.startswith("transformer 'Shape': ")


# --- the HTTP tee's response ------------------------------------------------------------------------------------


@pytest.mark.parametrize(("answer", "kept"), [(None, False), ({}, False), ({"id": 7}, True), ([1], True)])
def test_http_tee_response_only_for_a_body(answer: Any, kept: bool) -> None:
    cfg = config({"tee": {"name": "Send", "outputConnectorRef": "Web"}},
                 externals=(external("ExternalHttp", "Web", "https://example.com/hook"),))
    for codegen in (True, False):
        world = MemoryWorld(responses={"Web": answer})
        outcomes = compile_plan(cfg, codegen=codegen).run([Record("r0", {"a": 1}), Record("r1", {"a": 2})],
                                                          NOW_MS, world.perform)
        for o in outcomes:
            [entry] = o.outputs[0][1]["internal:tee:output"]
            assert ("response" in entry) is kept and entry.get("response") == (answer if kept else None)
