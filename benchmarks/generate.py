"""Events from binge's generator schemas, seeded and repeatable: the product's generator (``agglo genevents``)."""

from __future__ import annotations

from collections.abc import Iterator

from handlers.authoring.genevents import generate, load_schema


def events(schema_file: str, n: int, seed: int = 7) -> Iterator[dict]:
    return generate(load_schema(schema_file), n, seed)
