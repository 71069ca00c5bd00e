"""``agglo schema``: the JSON Schema of a config, from the pydantic models, for editors to complete and check.

A condition is described in both forms: the AST object, or its text.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from agglo_core.config import UnaryOperator
from agglo_core.processes import config_model

SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"
_CONDITION_TEXT = {
    "type": "string",
    "description": "A condition as text, e.g. \"someDict.someFixed == 'foobar' && someNum >= 3 || "
                   "exists(tags.0)\"; \"\" is always true.",
}


def config_schema() -> dict[str, Any]:
    schema = config_model().model_json_schema()
    _describe_condition_text(schema)
    # Editors show this where a unary op is chosen: binge's names alone would mislead.
    schema["$defs"]["UnaryExpression"]["properties"]["op"]["description"] = " ".join((UnaryOperator.__doc__ or "").split())
    return {"$schema": SCHEMA_DIALECT, **schema, "title": "agglo pipeline config",
            "required": ["partitionUuid"]}


def _describe_condition_text(node: Any) -> None:
    """The string branch of every condition (``Condition | str``) gets a description and an example."""
    if isinstance(node, dict):
        branches = node.get("anyOf")
        if isinstance(branches, list) and {"$ref": "#/$defs/Condition"} in branches:
            node["anyOf"] = [_CONDITION_TEXT if b == {"type": "string"} else b for b in branches]
        for value in node.values():
            _describe_condition_text(value)
    elif isinstance(node, list):
        for value in node:
            _describe_condition_text(value)


def main(args: argparse.Namespace) -> int:
    sys.stdout.write(json.dumps(config_schema(), indent=2) + "\n")
    return 0
