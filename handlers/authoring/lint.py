"""``agglo lint``: validation (every problem, as errors) and then the warnings of ``agglo_core.lint``.

Text output is one finding a line, ``CONFIG: PATH: LEVEL: MESSAGE [RULE]``;
``--format json`` prints one JSON list of findings. Exit status 1 when a config
is invalid (or, with ``--strict``, has warnings), else 0.
"""

from __future__ import annotations

import argparse
import json

from agglo_core import ConfigError
from agglo_core.lint import Finding, lint, problem_rule
from handlers.runtime.boot import read_config_file
from handlers.runtime.entwine_keys import validate_source
from handlers.runtime.execs import allow_list_from, is_allowed

KEY_UNREADABLE = "key-unreadable"


def lint_source(source: bytes, allowed: frozenset[str]) -> list[Finding]:
    try:
        config, unreadable = validate_source(source)
    except ConfigError as e:
        return [Finding(*_split(problem), level="error") for problem in e.problems]
    keys = [Finding(path, KEY_UNREADABLE, message) for path, _, message in map(_split, unreadable)]
    return keys + lint(config, lambda path: is_allowed(path, allowed), json.loads(source))


def _split(problem: str) -> tuple[str, str, str]:
    path, _, message = problem.partition(": ")
    return path, problem_rule(message), message


def main(args: argparse.Namespace) -> int:
    allowed = allow_list_from(args.allow_exec)
    found = [(name, f) for name in args.configs for f in lint_source(read_config_file(name), allowed)]
    if args.format == "json":
        print(json.dumps([{"config": name, **f.to_dict()} for name, f in found], indent=2))
    else:
        for name, f in found:
            print(f"{name}: {f.path}: {f.level}: {f.message} [{f.rule}]")
    failing = {"error", "warning"} if args.strict else {"error"}
    return 1 if any(f.level in failing for _, f in found) else 0
