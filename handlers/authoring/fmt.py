"""``agglo fmt``: a config re-indented, and with ``--conditions`` its conditions rewritten as text or as AST.

Only condition fields change (found through the validated models, so a
``"condition"`` key inside a tee's ``additionalBody`` is left alone); key order
and everything else stay. Text to AST and back gives the original AST for every
condition binge's AST can express.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from typing import Any

from pydantic import BaseModel

from agglo_core import ConfigError, load_config
from agglo_core.condition_syntax import format_condition
from agglo_core.config import Condition
from handlers.runtime.boot import UsageError, read_config_file

_Convert = Callable[[Condition], Any]


def _as_ast(condition: Condition) -> dict:
    return condition.model_dump(mode="json", exclude_none=True)


def rewrite_conditions(data: Any, model: Any, convert: _Convert) -> Any:
    """``data`` (the config as parsed JSON) with every condition replaced by ``convert(condition)``.

    ``model`` is the validated model of ``data``, walked alongside it. Problems
    (a condition with no text form) are raised as a ``ConfigError`` with paths.
    """
    problems: list[str] = []

    def walk(raw: Any, node: Any, where: str) -> Any:
        if isinstance(node, BaseModel) and isinstance(raw, dict):
            out = {}
            for key, value in raw.items():
                child, child_path = getattr(node, key, None), f"{where}.{key}" if where else key
                if key == "condition" and isinstance(child, Condition):
                    try:
                        out[key] = convert(child)
                    except ValueError as e:
                        problems.append(f"{child_path}: has no text form: {e}")
                        out[key] = value
                else:
                    out[key] = walk(value, child, child_path)
            return out
        if isinstance(node, tuple) and isinstance(raw, list):
            return [walk(r, n, f"{where}[{i}]") for i, (r, n) in enumerate(zip(raw, node, strict=True))]
        return raw

    out = walk(data, model, "")
    if problems:
        raise ConfigError(problems)
    return out


def format_config(source: bytes, conditions: str | None) -> str:
    """The config's text, re-indented; ``conditions`` ("string" or "ast") rewrites its conditions."""
    config = load_config(source)
    data = json.loads(source)
    if conditions is not None:
        data = rewrite_conditions(data, config, format_condition if conditions == "string" else _as_ast)
    return json.dumps(data, indent=2, ensure_ascii=False) + "\n"


def main(args: argparse.Namespace) -> int:
    if args.to and not args.conditions:
        raise UsageError("--to says which form --conditions writes: give --conditions too")
    if not args.write and len(args.configs) != 1:
        raise UsageError("without -w, fmt prints one config: give one CONFIG, or -w to rewrite each in place")
    conditions = (args.to or "string") if args.conditions else None
    status = 0
    for name in args.configs:
        try:
            text = format_config(read_config_file(name), conditions)
        except ConfigError as e:
            for problem in e.problems:
                print(f"{name}: {problem}", file=sys.stderr)
            status = 1
            continue
        if args.write:
            with open(name, "w", encoding="utf-8") as f:
                f.write(text)
        else:
            sys.stdout.write(text)
    return status
