"""``agglo test``: run config unit tests against stand-ins for every external system, report like pytest.

Exit status: 0 when every test passed, 1 when one failed, 2 when a test file
(or the config it names) could not be read or has problems, or no test file was found.
"""

from __future__ import annotations

import difflib
import json
import os
import sys
from collections.abc import Iterator, Sequence
from typing import IO, Any

from agglo_core import Plan, Record, RecordError
from handlers.authoring.describe import describe_effect
from handlers.authoring.mocks import mock_runtime
from handlers.authoring.testfile import (
    Expectation,
    TestCase,
    TestFile,
    TestFileError,
    is_test_file,
    load_test_file,
    tested_config,
)


def _equal(a: Any, b: Any) -> bool:
    """JSON equality: true and 1 differ, 1 and 1.0 do not."""
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_equal(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_equal(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, int | float) and isinstance(b, int | float):
        return a == b
    return type(a) is type(b) and a == b


def _projected(actual: Any, expected: Any) -> Any:
    """``actual`` cut down to the keys ``expected`` names (recursively), so a diff shows only what matters."""
    if isinstance(expected, dict) and isinstance(actual, dict):
        return {k: _projected(actual[k], v) for k, v in expected.items() if k in actual}
    if isinstance(expected, list) and isinstance(actual, list) and len(expected) == len(actual):
        return [_projected(a, e) for a, e in zip(actual, expected, strict=True)]
    return actual


def _without_unnamed_internals(actual: dict, expected: dict) -> dict:
    """agglo's ``internal:`` bookkeeping is compared only where the expectation names it."""
    return {k: v for k, v in actual.items() if not k.startswith("internal:") or k in expected}


def _pretty(value: Any) -> list[str]:
    return json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False).splitlines()


def _diff(expected: Any, actual: Any) -> str:
    lines = difflib.unified_diff(_pretty(expected), _pretty(actual), "expected", "actual", lineterm="", n=3)
    return "\n".join(lines)


def _check(exp: Expectation, output: dict | None, error: RecordError | None) -> str | None:
    """None when the pipeline's result meets ``exp``, else what went wrong, with a diff."""
    got = (f"it failed in process '{error.process}': {error.message}" if error is not None
           else "it gave no output (stopped)" if output is None else None)
    if exp.matcher == "absent":
        if output is None and error is None:
            return None
        return "expected no output, " + (got or "but it gave:\n" + "\n".join(_pretty(output)))
    if exp.matcher == "error_contains":
        if error is not None and exp.value in error.message:
            return None
        return f"expected an error containing {exp.value!r}, " + (
            f"but {got}" if got else "but it gave:\n" + "\n".join(_pretty(output)))
    if output is None:
        return f"expected an output ({exp.matcher}), but {got}"
    if exp.matcher == "json_equals":
        actual = _without_unnamed_internals(output, exp.value)
        return None if _equal(actual, exp.value) else f"output differs (json_equals):\n{_diff(exp.value, actual)}"
    actual = _projected(output, exp.value)
    return None if _equal(actual, exp.value) else f"output differs (json_contains):\n{_diff(exp.value, actual)}"


def run_test(tf: TestFile, plan: Plan, case: TestCase) -> list[str]:
    """The failures of one test (empty: it passed)."""
    runtime, performed = mock_runtime(plan, case.kv, case.http, case.execs, case.now_ms)
    # Record ids (and so tee keys) depend on the file's name, not on where the tests are run from.
    name = os.path.basename(tf.path)
    outcomes = [runtime.process([Record(f"{name}::{case.name}#{i + 1}", event, source=name)])[0]
                for i, event in enumerate(case.events)]
    failures: list[str] = []
    if not case.expect and not case.effects:  # nothing to compare: the test asks only that every event goes through
        for i, outcome in enumerate(outcomes):
            which = f", event {i + 1}" if len(case.events) > 1 else ""
            failures.extend(f"pipeline {e.pipeline}{which}: it failed in process '{e.process}': {e.message}"
                            for e in outcome.errors)
    for pipe, expectations in case.expect.items():
        for i, exp in enumerate(expectations):
            if exp is None:
                continue
            outcome = outcomes[i]
            output = next((event for name, event in outcome.outputs if name == pipe), None)
            error = next((e for e in outcome.errors if e.pipeline == pipe), None)
            problem = _check(exp, output, error)
            if problem:
                which = f", event {i + 1}" if len(case.events) > 1 else ""
                failures.append(f"pipeline {pipe}{which}: {problem}")
    for target, expected in case.effects.items():
        actual = [describe_effect(e) for t, e in performed if t == target]
        shown = _projected(actual, expected)
        if not _equal(shown, expected):
            failures.append(f"effects on {target} differ ({len(expected)} expected, {len(actual)} performed):\n"
                            + _diff(expected, shown))
    return failures


def _discover(paths: list[str]) -> Iterator[str]:
    for path in paths:
        if os.path.isdir(path):
            for root, dirs, files in os.walk(path):
                dirs[:] = sorted(d for d in dirs if not d.startswith(".") and d not in ("node_modules", "__pycache__"))
                yield from (os.path.join(root, f) for f in sorted(files) if is_test_file(f))
        elif os.path.exists(path):
            yield path
        else:
            raise FileNotFoundError(path)


class NoTests(LookupError):
    """A config named with ``-c`` that no test file beside it tests."""


def files_testing(config: str) -> list[str]:
    """The test files beside ``config`` that test it (by their ``config``, or by their name)."""
    if not os.path.isfile(config):
        raise FileNotFoundError(config)
    directory, target = os.path.dirname(config), os.path.realpath(config)
    found = [os.path.join(directory, name) for name in sorted(os.listdir(directory or "."))
             if is_test_file(name) and os.path.realpath(tested_config(os.path.join(directory, name))) == target]
    if not found:
        raise NoTests(config)
    return found


def run_files(paths: list[str], out: IO[str], configs: Sequence[str] = ()) -> int:
    """Run the tests in ``paths`` (files, or directories searched for test files) and those of ``configs``."""
    try:
        files = list(dict.fromkeys(os.path.normpath(f) for f in
                                   [*_discover(paths), *(t for c in configs for t in files_testing(c))]))
    except FileNotFoundError as e:
        print(f"agglo: no such file or directory: {e.args[0]}", file=sys.stderr)
        return 2
    except NoTests as e:
        print(f"agglo: no test file beside {e.args[0]} tests it (*.agglo-test.yaml, .yml, .json named after it "
              "or naming it as config)", file=sys.stderr)
        return 2
    if not files:
        print(f"agglo: no test files (*.agglo-test.yaml, .yml, .json) under {' '.join(paths)}", file=sys.stderr)
        return 2
    passed, failed, broken = 0, [], []
    for path in files:
        out.write(path + " ")
        out.flush()
        try:
            tf = load_test_file(path)
            plan = Plan(tf.config)  # type: ignore[arg-type]
        except TestFileError as e:
            out.write("E\n")
            broken.append((path, e.problems))
            continue
        for case in tf.tests:
            failures = run_test(tf, plan, case)
            out.write("F" if failures else ".")
            out.flush()
            if failures:
                failed.append((f"{path}:{case.line}" if case.line else path, case.name, failures))
            else:
                passed += 1
        out.write("\n")
    if broken:
        out.write(f"\n{' ERRORS ':=^80}\n")
        for path, problems in broken:
            out.write(f"{' ' + path + ' ':_^80}\n" + "\n".join(problems) + "\n")
    if failed:
        out.write(f"\n{' FAILURES ':=^80}\n")
        for where, name, failures in failed:
            out.write(f"{' ' + name + ' ':_^80}\n{where}: {name}\n" + "\n".join(failures) + "\n\n")
    summary = f"{passed} passed, {len(failed)} failed" + (f", {len(broken)} error(s)" if broken else "")
    out.write(f"{' ' + summary + ' ':=^80}\n")
    out.flush()
    return 2 if broken else 1 if failed else 0


def main(args: Any) -> int:
    """``agglo test [PATH ...] [-c CONFIG ...]``: neither given runs every test file under the current directory."""
    configs = args.configs or []
    return run_files(args.paths or ([] if configs else ["."]), sys.stdout, configs)
