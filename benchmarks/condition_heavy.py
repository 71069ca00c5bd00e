"""Workload 1b: a 12-process, condition-heavy pipeline over the basic events, against its hand-written twin.

Four annotators with conditions (exists, ranges, modulus, regex, and/or),
two transformers, two aggregators with group keys and forwarded state, a
continuation, a filter, a conditional tee and a final annotator. The twin
does exactly that work by hand; ``check`` proves the outputs and tee bodies
equal.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import orjson

from agglo_core.ids import IdMaker
from benchmarks.core_throughput import agglo_runner

PARTITION, PIPELINE = "3f1c8a52-5d0e-4b7a-9d1e-2c6a7b8e9f01", "Scoring"


# --- the config, in binge's condition AST -------------------------------------------------------------------

def _var(name: str) -> dict:
    return {"variable": {"name": name}}


def _cmp(lhs: dict, op: str, rhs: Any) -> dict:
    right = {"literal": rhs} if isinstance(rhs, str) else {"numeric": rhs}
    return {"comparator": {"lhs": lhs, "rhs": right, "op": op}}


def _logic(op: str, lhs: dict, rhs: dict) -> dict:
    return {"logical": {"lhs": {"expression": lhs}, "rhs": {"expression": rhs}, "op": op}}


def _when(expr: dict) -> dict:
    return {"expression": expr}


def _exists(key: str) -> dict:
    return {"exists": {"ops": [{"key": key, "op": "Exists"}]}}


def _mod2(name: str) -> dict:
    return {"expression": {"binary": {"lhs": _var(name), "rhs": {"numeric": 2}, "op": "Modulus"}}}


def _annotator(name: str, *annotations: tuple[str, str, dict]) -> dict:
    return {"annotator": {"name": name, "annotations": [
        {"fieldKey": key, "value": value, "condition": cond} for key, value, cond in annotations]}}


def _aggregator(name: str, kind: str, group: str) -> dict:
    return {"aggregator": {"name": name, "stateStore": "State", "forwardState": True, "condition": _exists(group),
                           "aggregation": {"key": "someNum", "aggregationType": kind, "groupByKeys": [group]}}}


def _transformer(name: str, source: str, target: str, transformation: dict) -> dict:
    return {"transformer": {"name": name, "forwardInputFields": True, "specs": [
        {"sourceField": source, "targetField": target, "transformation": transformation}]}}


def config() -> dict:
    num = _var("someNum")
    definitions = [
        _annotator("Classify", ("schema", "foo", _exists("someNum")), ("schema", "bar", _exists("someVocab"))),
        _annotator("Size",
                   ("size", "small", _when(_cmp(num, "LessThan", 400))),
                   ("size", "medium", _when(_logic("LogicalAnd", _cmp(num, "GreaterThanOrEqual", 400),
                                                   _cmp(num, "LessThan", 700)))),
                   ("size", "large", _when(_cmp(num, "GreaterThanOrEqual", 700)))),
        _annotator("Parity", ("parity", "even", _when(_cmp(_mod2("someNum"), "LessThan", 1))),
                   ("parity", "odd", _when(_cmp(_mod2("someNum"), "GreaterThanOrEqual", 1)))),
        _annotator("IsBuzz", ("buzz", "yes", _when(_cmp(_var("someVocab"), "RegexMatch", "^buzz/")))),
        _transformer("Strip", "someVocab", "vocab", {
            "transformationType": "TransformMapRegex", "condition": _exists("someVocab"),
            "mapRegexArgs": {"regex": "^(?:buzz/)?(.*)$", "replace": "$1"}}),
        _transformer("Double", "someNum", "doubled", {
            "transformationType": "TransformMapMult", "condition": _when(_cmp(_var("schema"), "Equal", "foo")),
            "mapMultArgs": {"value": 2}}),
        _aggregator("CountBySize", "AggCount", "size"),
        _aggregator("MaxByParity", "AggMax", "parity"),
        {"continuation": {"name": "Gate", "condition": _when(_logic(
            "LogicalOr", _cmp(_var("schema"), "Equal", "bar"), _cmp(num, "GreaterThanOrEqual", 200)))}},
        _annotator("Flag", ("alert", "high", _when(_logic(
            "LogicalOr",
            _logic("LogicalAnd", _cmp(_var("size"), "Equal", "large"), _cmp(_var("parity"), "Equal", "even")),
            _logic("LogicalAnd", _cmp(_var("buzz"), "Equal", "yes"), _cmp(_var("vocab"), "Equal", "fizz")))))),
        {"filter": {"name": "DropString", "regex": "^someString$", "keepMatched": False}},
        {"tee": {"name": "Alerts", "outputConnectorRef": "AlertFiles", "condition": _exists("alert")}},
    ]
    names = [next(iter(d.values()))["name"] for d in definitions]
    return {
        "partitionUuid": PARTITION,
        "pipelines": [{"name": PIPELINE, "processes": [{"name": n} for n in names]}],
        "externalSystems": [
            {"name": "State", "connectionString": "mem:scoring", "externalType": "ExternalKVStore"},
            {"name": "AlertFiles", "connectionString": "/tmp/alerts", "externalType": "ExternalLocalFile"},
        ],
        "processDefinitions": definitions,
    }


# --- the twin ---------------------------------------------------------------------------------------------

def twin_runner() -> tuple[Callable[[list[bytes]], list[bytes]], dict[str, dict]]:
    """The same work, written by hand for this one config."""
    tee_ids = IdMaker(PARTITION, PIPELINE, "Alerts", "tee")
    entry = {"outputType": "localfile", "connectionString": "/tmp/alerts"}
    strip = re.compile("^(?:buzz/)?(.*)$").sub
    is_buzz = re.compile("^buzz/").search
    alerts: dict[str, dict] = {}
    counts: dict[str, int] = {}
    maxima: dict[str, Any] = {}
    loads, dumps = orjson.loads, orjson.dumps
    agg_key = f"internal:aggregation:{PIPELINE}"

    def run(data: list[bytes]) -> list[bytes]:
        out = []
        for n, line in enumerate(data):
            e = loads(line)
            e["internal:partitionID"] = PARTITION
            e["internal:name"] = PIPELINE
            num = e.get("someNum")
            is_num = type(num) is int or type(num) is float
            vocab = e.get("someVocab")
            if "someNum" in e:
                e["schema"] = "foo"
            if "someVocab" in e:
                e["schema"] = "bar"
            if is_num:
                e["size"] = "small" if num < 400 else "medium" if num < 700 else "large"
                e["parity"] = "even" if num % 2 < 1 else "odd"  # someNum is a float: its integer part's parity
            if type(vocab) is str:
                if is_buzz(vocab):
                    e["buzz"] = "yes"
                e["vocab"] = strip(r"\g<1>", vocab)
            if e.get("schema") == "foo" and is_num:
                e["doubled"] = num * 2
            aggs = {}
            size = e.get("size")
            if size is not None:
                counts[size] = counts.get(size, 0) + 1
                aggs["someNum:AggCount"] = {size: {"value": counts[size]}}
            parity = e.get("parity")
            if parity is not None and is_num:
                best = maxima.get(parity)
                maxima[parity] = num if best is None or num > best else best
                aggs["someNum:AggMax"] = {parity: {"value": maxima[parity]}}
            if aggs:
                e[agg_key] = aggs
            if not (e.get("schema") == "bar" or (is_num and num >= 200)):
                continue
            if (size == "large" and parity == "even") or (e.get("buzz") == "yes" and e.get("vocab") == "fizz"):
                e["alert"] = "high"
            e.pop("someString", None)
            if "alert" in e:
                uuid = tee_ids(f"in#{n}")
                alerts[uuid] = dict(e)
                e["internal:tee:output"] = [{"uuid": uuid, **entry}]
            out.append(dumps(e))
        return out

    return run, {"AlertFiles": alerts}


def runners() -> dict[str, Callable[[], tuple[Callable[[list[bytes]], list[bytes]], dict]]]:
    cfg = orjson.dumps(config())
    return {"hand-written": twin_runner, "agglo": lambda: agglo_runner(cfg)}
