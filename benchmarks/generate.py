"""Events from binge's generator schemas (the subset its basic example uses), seeded and repeatable.

Supported value kinds: ``randomNumeric``, ``fixedString``, ``randomString``,
``vocabString`` (with ``prefixName`` from ``stringPrefixes``), ``dict`` and
``reference`` (a value an earlier event of another schema generated).
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from typing import Any


def _value(spec: dict, rng: random.Random, prefixes: dict, refs: dict, path: str, schema: str) -> Any:
    (kind, args), = spec.items()
    if kind == "randomNumeric":
        value: Any = rng.randint(int(args.get("min", 0)), int(args.get("max", 100)))
    elif kind == "fixedString":
        value = args["value"]
    elif kind == "randomString":
        alphabet = args.get("alphabet", "abcdefghijklmnopqrstuvwxyz")
        value = "".join(rng.choice(alphabet) for _ in range(rng.randint(args.get("minLen", 1), args.get("maxLen", 8))))
    elif kind == "vocabString":
        value = rng.choice(args["vocab"])
        if args.get("prefixName") and rng.random() < 0.5:
            value = prefixes[args["prefixName"]] + value
    elif kind == "dict":
        value = {k: _value(v, rng, prefixes, refs, f"{path}.{k}", schema) for k, v in args["kvs"].items()}
    elif kind == "reference":
        value = refs.get((args["schemaName"], args["path"]))
    else:
        raise ValueError(f"generator kind {kind!r} is not supported")
    refs[(schema, path.lstrip("."))] = value
    return value


def events(schema_file: str, n: int, seed: int = 7) -> Iterator[dict]:
    with open(schema_file) as f:
        spec = json.load(f)
    rng = random.Random(seed)
    schemas, weights = spec["schemas"], spec.get("schemaDistribution") or None
    prefixes, refs = spec.get("stringPrefixes", {}), {}
    for _ in range(n):
        schema = rng.choices(schemas, weights=weights)[0]
        event = {k: _value(v, rng, prefixes, refs, k, schema["name"]) for k, v in schema["root"]["kvs"].items()}
        yield {k: v for k, v in event.items() if v is not None}
