"""binge's event generator (``genevents``): a schema file in, events out, seeded and repeatable.

A schema file names event shapes (``schemas``), how often each is drawn
(``schemaDistribution``) and string prefixes and suffixes. Value kinds, as in
binge: ``fixedString``, ``randomString``, ``vocabString``, ``randomNumeric``,
``numericSet``, ``fixedNumeric``, ``boolean``, ``counter``, ``dict``, ``list``
and ``reference`` (a top-level value an earlier event of another schema made,
each usable ``maxRef`` times; a schema whose references have nothing left to
use waits for the schema it refers to, which is drawn instead). Strings may share
a value within an event (``sharedName``) or carry one to the next event that
reads it (``storeStringState`` / ``readStringState``).

Where binge's code differs from its schema's meaning, this does what was meant:
a list or string length is drawn from ``minLen`` to ``maxLen`` inclusive, and a
distribution need not add up to exactly 1 (it is normalised).
"""

from __future__ import annotations

import copy
import itertools
import json
import random
from collections import deque
from collections.abc import Iterator
from typing import Any

_STRING_STATE = {"prefixName", "suffixName", "sharedName", "storeStringState", "readStringState"}
KINDS: dict[str, frozenset[str]] = {
    "fixedString": frozenset({"value"}),
    "randomString": frozenset({"minLen", "maxLen", "alphabet", "maxRef", *_STRING_STATE}),
    "vocabString": frozenset({"vocab", "maxRef", *_STRING_STATE}),
    "randomNumeric": frozenset({"min", "max", "maxRef"}),
    "numericSet": frozenset({"values"}),
    "fixedNumeric": frozenset({"value"}),
    "boolean": frozenset(),
    "counter": frozenset({"counterName"}),
    "dict": frozenset({"kvs"}),
    "list": frozenset({"minLen", "maxLen", "value"}),
    "reference": frozenset({"schemaName", "path"}),
}
"""Each value kind and the fields it takes."""

_BUDGETED = ("randomString", "vocabString", "randomNumeric")
"""Kinds whose values may be referenced ``maxRef`` times (at least once); others without limit."""


class SchemaError(ValueError):
    """Every problem in a generator schema, each with its JSON path."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("\n".join(problems))


def _is_number(v: Any) -> bool:
    return type(v) is int or type(v) is float


def _check_value(spec: Any, path: str, names: dict[str, dict], prefixes: dict, suffixes: dict) -> list[str]:
    if not isinstance(spec, dict) or len(spec) != 1:
        return [f"{path}: a value must be an object with exactly one of {', '.join(KINDS)}"]
    (kind, args), = spec.items()
    here = f"{path}.{kind}"
    if kind not in KINDS:
        return [f"{path}: unknown generator {kind!r} (known: {', '.join(KINDS)})"]
    if not isinstance(args, dict):
        return [f"{here}: must be an object"]
    problems = [f"{here}.{k}: unknown field for {kind} (known: {', '.join(sorted(KINDS[kind])) or 'none'})"
                for k in args if k not in KINDS[kind]]
    for field in ("minLen", "maxLen", "maxRef"):
        if field in args and (type(args[field]) is not int or args[field] < 0):
            problems.append(f"{here}.{field}: must be a whole number ≥ 0")
    for field in ("min", "max"):
        if field in args and not _is_number(args[field]):
            problems.append(f"{here}.{field}: must be a number")
    if not problems and args.get("minLen", 0) > args.get("maxLen", 0) and kind in ("randomString", "list"):
        problems.append(f"{here}: minLen ({args['minLen']}) is greater than maxLen ({args.get('maxLen', 0)})")
    if not problems and kind == "randomNumeric" and args.get("min", 0) > args.get("max", 0):
        problems.append(f"{here}: min ({args.get('min', 0)}) is greater than max ({args.get('max', 0)})")
    for field, table, what in (("prefixName", prefixes, "stringPrefixes"), ("suffixName", suffixes, "stringSuffixes")):
        if field in args and args[field] not in table:
            problems.append(f"{here}.{field}: no {what} entry named {args[field]!r}")
    if kind == "randomString" and not (isinstance(args.get("alphabet"), str) and args["alphabet"]):
        problems.append(f"{here}.alphabet: must be a non-empty string")
    elif kind == "vocabString" and not (isinstance(args.get("vocab"), list) and args["vocab"]
                                        and all(isinstance(w, str) for w in args["vocab"])):
        problems.append(f"{here}.vocab: must be a non-empty list of strings")
    elif kind == "fixedString" and not isinstance(args.get("value", ""), str):
        problems.append(f"{here}.value: must be a string")
    elif kind == "fixedNumeric" and not _is_number(args.get("value", 0)):
        problems.append(f"{here}.value: must be a number")
    elif kind == "numericSet" and not (isinstance(args.get("values"), list) and args["values"]
                                       and all(_is_number(v) for v in args["values"])):
        problems.append(f"{here}.values: must be a non-empty list of numbers")
    elif kind == "counter" and not isinstance(args.get("counterName", ""), str):
        problems.append(f"{here}.counterName: must be a string")
    elif kind == "dict":
        problems.extend(_check_kvs(args.get("kvs"), f"{here}.kvs", names, prefixes, suffixes))
    elif kind == "list":
        if "value" not in args:
            problems.append(f"{here}.value: missing (what each element is)")
        else:
            problems.extend(_check_value(args["value"], f"{here}.value", names, prefixes, suffixes))
    elif kind == "reference":
        target = names.get(args.get("schemaName"))  # type: ignore[arg-type]
        if target is None:
            problems.append(f"{here}.schemaName: no schema named {args.get('schemaName')!r}")
        elif args.get("path") not in ((target.get("root") or {}).get("kvs") or {}):
            problems.append(f"{here}.path: schema {args['schemaName']!r} has no top-level key "
                            f"{args.get('path')!r} (only top-level values can be referenced)")
    return problems


def _check_kvs(kvs: Any, path: str, names: dict[str, dict], prefixes: dict, suffixes: dict) -> list[str]:
    if not isinstance(kvs, dict):
        return [f"{path}: must be an object of key -> value"]
    return [p for k, v in kvs.items() for p in _check_value(v, f"{path}.{k}", names, prefixes, suffixes)]


def _references(spec: Any) -> Iterator[tuple[str, str]]:
    """(schema, path) of every reference inside a value spec."""
    if not isinstance(spec, dict):
        return
    for kind, args in spec.items():
        if kind == "reference":
            yield args["schemaName"], args["path"]
        elif kind == "dict":
            for v in args["kvs"].values():
                yield from _references(v)
        elif kind == "list":
            yield from _references(args["value"])


def _cycle(deps: dict[str, set[tuple[str, str]]]) -> list[str] | None:
    """A chain of schemas that refer to each other in a circle, if there is one."""
    done: set[str] = set()

    def visit(name: str, trail: list[str]) -> list[str] | None:
        if name in trail:
            return trail[trail.index(name):] + [name]
        if name in done:
            return None
        for target, _ in deps.get(name, ()):
            found = visit(target, [*trail, name])
            if found:
                return found
        done.add(name)
        return None

    return next((c for c in (visit(n, []) for n in deps) if c), None)


def check_schema(spec: Any) -> list[str]:
    """Every problem in a schema file's content, each with its JSON path; empty when it can generate."""
    if not isinstance(spec, dict):
        return ["(root): a generator schema must be a JSON object"]
    known = {"schemas", "schemaDistribution", "stringPrefixes", "stringSuffixes"}
    problems = [f"{k}: unknown field (expected {', '.join(sorted(known))})" for k in spec if k not in known]
    schemas = spec.get("schemas")
    if not isinstance(schemas, list) or not schemas:
        return [*problems, "schemas: must be a non-empty list"]
    prefixes, suffixes = spec.get("stringPrefixes", {}), spec.get("stringSuffixes", {})
    for field, table in (("stringPrefixes", prefixes), ("stringSuffixes", suffixes)):
        if not isinstance(table, dict) or not all(isinstance(v, str) for v in table.values()):
            problems.append(f"{field}: must be an object of name -> string")
    if problems:
        return problems
    names: dict[str, dict] = {}
    for i, s in enumerate(schemas):
        if not isinstance(s, dict) or not isinstance(s.get("name"), str) or not s["name"]:
            problems.append(f"schemas[{i}].name: every schema needs a name")
        elif s["name"] in names:
            problems.append(f"schemas[{i}].name: {s['name']!r} is used by an earlier schema too")
        else:
            names[s["name"]] = s
    for i, s in enumerate(schemas):
        if not isinstance(s, dict):
            continue
        problems.extend(f"schemas[{i}].{k}: unknown field (expected name, root)" for k in s if k not in ("name", "root"))
        root = s.get("root")
        if not isinstance(root, dict) or set(root) != {"kvs"}:
            problems.append(f"schemas[{i}].root: must be {{\"kvs\": {{key: value, …}}}}")
            continue
        problems.extend(_check_kvs(root["kvs"], f"schemas[{i}].root.kvs", names, prefixes, suffixes))
    dist = spec.get("schemaDistribution")
    if dist is not None and not (isinstance(dist, list) and len(dist) == len(schemas)
                                 and all(_is_number(w) and w >= 0 for w in dist) and sum(dist) > 0):
        problems.append(f"schemaDistribution: must be {len(schemas)} non-negative number(s), one per schema, "
                        "not all 0")
    if not problems:
        deps = {s["name"]: {r for v in s["root"]["kvs"].values() for r in _references(v)} for s in schemas}
        if cycle := _cycle(deps):
            problems.append(f"schemas: references go round in a circle ({' -> '.join(cycle)}), so no event "
                            "could be made first")
    return problems


class Generator:
    """Makes events one at a time from a checked schema; all randomness comes from ``rng``."""

    def __init__(self, spec: dict, rng: random.Random) -> None:
        problems = check_schema(spec)
        if problems:
            raise SchemaError(problems)
        self._rng = rng
        self._schemas = {s["name"]: s["root"]["kvs"] for s in spec["schemas"]}
        self._names = list(self._schemas)
        weights = spec.get("schemaDistribution") or [1] * len(self._names)
        self._cumulative = list(itertools.accumulate(weights))
        self._prefixes = spec.get("stringPrefixes", {})
        self._suffixes = spec.get("stringSuffixes", {})
        self._deps = {name: {r for v in kvs.values() for r in _references(v)} for name, kvs in self._schemas.items()}
        self._refs: dict[tuple[str, str], deque[list[Any]]] = {}
        self._counters: dict[str, int] = {}
        self._strings: dict[str, str] = {}

    def __iter__(self) -> Iterator[dict]:
        while True:
            yield self.next_event()

    def next_event(self) -> dict:
        name = self._rng.choices(self._names, cum_weights=self._cumulative)[0]
        return self._event(self._ready(name))

    def _ready(self, name: str) -> str:
        """``name``, or the schema it waits for when a value it refers to has no uses left."""
        for target, path in sorted(self._deps[name]):
            if not self._refs.get((target, path)):
                return self._ready(target)
        return name

    def _event(self, name: str) -> dict:
        shared: dict[str, str] = {}
        stored: dict[str, str] = {}
        kvs = self._schemas[name]
        event = {k: self._value(v, shared, stored) for k, v in kvs.items()}
        for k, spec in kvs.items():
            (kind, args), = spec.items()
            queue = self._refs.setdefault((name, k), deque())
            if kind in _BUDGETED:
                queue.append([event[k], max(1, args.get("maxRef", 0))])
            elif not queue:
                queue.append([event[k], None])  # usable without limit: the first value serves every reference
        self._strings.update(stored)
        return event

    def _value(self, spec: dict, shared: dict[str, str], stored: dict[str, str]) -> Any:
        (kind, args), = spec.items()
        rng = self._rng
        if kind == "fixedString":
            return args.get("value", "")
        if kind == "randomString":
            alphabet = args["alphabet"]
            return self._string(args, shared, stored, lambda: "".join(
                rng.choices(alphabet, k=rng.randint(args.get("minLen", 0), args.get("maxLen", 0)))))
        if kind == "vocabString":
            return self._string(args, shared, stored, lambda: rng.choice(args["vocab"]))
        if kind == "randomNumeric":
            low = args.get("min", 0)
            return low + rng.random() * (args.get("max", 0) - low)
        if kind == "numericSet":
            return rng.choice(args["values"])
        if kind == "fixedNumeric":
            return args.get("value", 0)
        if kind == "boolean":
            return rng.random() >= 0.5
        if kind == "counter":
            name = args.get("counterName", "")
            n = self._counters.get(name, 0)
            self._counters[name] = n + 1
            return n
        if kind == "dict":
            return {k: self._value(v, shared, stored) for k, v in args["kvs"].items()}
        if kind == "list":
            n = rng.randint(args.get("minLen", 0), args.get("maxLen", 0))
            return [self._value(args["value"], shared, stored) for _ in range(n)]
        return self._take_reference(args["schemaName"], args["path"])

    def _string(self, args: dict, shared: dict[str, str], stored: dict[str, str], fresh: Any) -> str:
        share, read = args.get("sharedName"), args.get("readStringState")
        s = shared.get(share, "") if share else ""
        if read and read in self._strings:
            s = self._strings[read]
        if not s:
            s = fresh()
        if share:
            shared[share] = s
        if store := args.get("storeStringState"):
            stored[store] = s
        if prefix := args.get("prefixName"):
            s = self._prefixes[prefix] + s
        if suffix := args.get("suffixName"):
            s = s + self._suffixes[suffix]
        return s

    def _take_reference(self, schema: str, path: str) -> Any:
        queue = self._refs[(schema, path)]
        entry = queue[0]
        if entry[1] is not None:
            entry[1] -= 1
            if entry[1] <= 0:
                queue.popleft()
        value = entry[0]
        return copy.deepcopy(value) if isinstance(value, dict | list) else value


def load_schema(path: str) -> dict:
    """A schema file's JSON; ``SchemaError`` when it cannot be read or parsed (with line and column)."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise SchemaError([f"{path}: cannot read: {e.strerror}"]) from None
    try:
        return json.loads(data)
    except json.JSONDecodeError as e:
        raise SchemaError([f"{path}:{e.lineno}:{e.colno}: not valid JSON: {e.msg}"]) from None
    except UnicodeDecodeError as e:
        raise SchemaError([f"{path}: not UTF-8 text: {e}"]) from None


def generate(spec: dict, n: int, seed: int | None = None) -> Iterator[dict]:
    """``n`` events from a schema file's content; the same seed gives the same events."""
    return itertools.islice(Generator(spec, random.Random(seed)), n)


def main(args: Any) -> int:
    """``agglo genevents``: JSON lines on stdout; a bad schema is reported with JSON paths (exit 2)."""
    import sys

    import orjson

    try:
        spec = load_schema(args.schema)
        generator = Generator(spec, random.Random(args.seed))
    except SchemaError as e:
        for problem in e.problems:
            shown = problem if problem.startswith(args.schema + ":") else f"{args.schema}: {problem}"
            print(f"agglo: {shown}", file=sys.stderr)
        return 2
    out = sys.stdout.buffer
    for event in itertools.islice(generator, args.count):
        out.write(orjson.dumps(event) + b"\n")
    out.flush()
    return 0
