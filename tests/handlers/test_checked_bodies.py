"""A store that keeps values takes the core's checked bodies without serialising them, and nothing else."""

from __future__ import annotations

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from agglo_core import Record, compile_plan
from agglo_core.effects import EffectFailed, Put
from handlers.connectors import base
from handlers.connectors.memory import MemoryObjectStore
from handlers.connectors.sqlite import SqliteKV


class Unencodable:
    """A body value orjson refuses."""


def counting_dumps(monkeypatch) -> list[object]:
    seen: list[object] = []
    real = base.orjson.dumps

    def dumps(value: object) -> bytes:
        seen.append(value)
        return real(value)

    monkeypatch.setattr(base.orjson, "dumps", dumps)
    return seen


def test_a_checked_body_is_kept_without_serialising_it(monkeypatch):
    seen = counting_dumps(monkeypatch)
    store = MemoryObjectStore("checked")
    body = {"a": [1, 2.5, "x"]}
    assert store.perform([Put("S", "k", body, checked=True)]) == [None]
    assert store.get("k") == body and seen == []


def test_an_unchecked_body_is_still_refused_and_a_json_store_still_serialises(tmp_path):
    store = MemoryObjectStore("unchecked")
    [result] = store.perform([Put("S", "k", {"bad": Unencodable()})])
    assert isinstance(result, EffectFailed) and not result.transient and store.get("k") is None
    sqlite = SqliteKV(str(tmp_path / "kv.db"))
    assert sqlite.perform([Put("S", "k", {"a": 1}, checked=True)]) == [None]
    assert sqlite.get("k") == {"a": 1}


CONFIG = {
    "partitionUuid": "5d9e1a7c-3b2f-4c8d-9e0a-1b2c3d4e5f60",
    "pipelines": [{"name": "P", "processes": [{"name": "T"}]}],
    "externalSystems": [{"name": "Out", "connectionString": "mem:tee-bodies", "externalType": "ExternalObjectStore"}],
    "processDefinitions": [{"tee": {"name": "T", "outputConnectorRef": "Out", "additionalBody": {"via": "tee"}}}],
}


@settings(max_examples=50, deadline=None)
@given(st.dictionaries(st.text(max_size=5), st.recursive(
    st.none() | st.booleans() | st.integers(-2**63, 2**63 - 1) | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=5), lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner,
                                                                                        max_size=3),
    max_leaves=10), max_size=5))
def test_every_body_a_tee_marks_checked_can_be_written_as_json(payload):
    """What the core marks checked is writable: any event that enters (lone surrogates in its text are refused
    there), through a tee with additionalBody."""
    plan = compile_plan(orjson.dumps(CONFIG))
    puts: list[Put] = []

    def perform(effects: list) -> list:
        puts.extend(e for e in effects if type(e) is Put)
        return [None] * len(effects)

    [outcome] = plan.run([Record("r", payload)], 0, perform)
    assert len(puts) == (1 if outcome.ok else 0)  # an event refused where it enters sends nothing
    for put in puts:
        assert put.checked
        orjson.dumps(put.body)
