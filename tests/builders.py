"""Small builders for configs in tests: one pipeline over the given process definitions."""

from __future__ import annotations

import pathlib
from typing import Any

BINGE = pathlib.Path(__file__).parent / "fixtures" / "binge" / "configs"

PARTITION = "c5024ca8-d601-499f-bb24-daae74357b5e"
NOW_MS = 1_700_000_000_000


def var(name: str) -> dict:
    return {"variable": {"name": name}}


def lit(value: str) -> dict:
    return {"literal": value}


def num(value: float) -> dict:
    return {"numeric": value}


def cmp(lhs: dict, op: str, rhs: dict) -> dict:
    return {"expression": {"comparator": {"lhs": lhs, "rhs": rhs, "op": op}}}


def exists(*keys: str, negate: tuple[str, ...] = ()) -> dict:
    ops = [{"key": k, "op": "Exists"} for k in keys] + [{"key": k, "op": "NotExists"} for k in negate]
    return {"exists": {"ops": ops}}


def kv(name: str = "State", cs: str = "mem:state") -> dict:
    return {"externalType": "ExternalKVStore", "name": name, "connectionString": cs}


def external(kind: str, name: str, cs: str) -> dict:
    return {"externalType": kind, "name": name, "connectionString": cs}


def config(*definitions: dict, externals: tuple[dict, ...] = (), order: list[str] | None = None,
           pipeline: str = "P", extra_pipelines: tuple[dict, ...] = (), retries: int = 0) -> dict[str, Any]:
    """A config with one pipeline running ``definitions`` in order (or the names in ``order``)."""
    names = order or [next(iter(d.values()))["name"] for d in definitions]
    return {
        "partitionUuid": PARTITION,
        "pipelines": [{"name": pipeline, "processes": [
            {"name": n, "retryStrategy": {"numRetries": retries, "initialBackOffMs": 1}} for n in names]},
            *extra_pipelines],
        "processDefinitions": list(definitions),
        "externalSystems": list(externals),
    }


def without_uuids(event: dict) -> dict:
    """An output without what differs between runs by design (tee uuids derive from record ids)."""
    out = dict(event)
    if "internal:tee:output" in out:
        out["internal:tee:output"] = [{k: v for k, v in t.items() if k != "uuid"} for t in out["internal:tee:output"]]
    return out
