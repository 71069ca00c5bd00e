"""``agglo fmt``: a config re-indented, and with ``--conditions`` its conditions rewritten as text or as AST.

Only condition fields change (found through the validated models, so a
``"condition"`` key inside a tee's ``additionalBody`` is left alone); key order
and everything else stay. Text to AST and back gives the original AST for every
condition binge's AST can express.
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
from collections.abc import Callable
from typing import Any

from agglo_core import ConfigError, load_config
from agglo_core.condition_syntax import format_condition, written_conditions
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
    out = copy.deepcopy(data)
    for path, holder, key, condition in written_conditions(out, model):
        try:
            holder[key] = convert(condition)
        except ValueError as e:
            problems.append(f"{path}: has no text form: {e}")
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
