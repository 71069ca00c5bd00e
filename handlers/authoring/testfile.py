"""Config unit test files (``*.agglo-test.yaml`` / ``.yml`` / ``.json``): read, checked, with positions.

Every problem names the file and, for YAML, the line and column (JSON files:
the line and column of a syntax error, the JSON path of anything else).
YAML support needs PyYAML, imported only when a YAML file is read.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from agglo_core import ConfigError, PipelinesConfig, load_config
from handlers.runtime.config_source import MAX_CONFIG_BYTES, ConfigTooLarge, bounded_config

SUFFIXES = (".agglo-test.yaml", ".agglo-test.yml", ".agglo-test.json")
MATCHERS = ("json_equals", "json_contains", "absent", "error_contains")
_TEST_FIELDS = ("name", "input", "now", "kv", "http", "exec", "expect", "effects")
Path = tuple[str | int, ...]


class TestFileError(Exception):
    """Every problem in one test file, each as ``FILE[:LINE:COL]: PATH: what``."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("\n".join(problems))


@dataclass(frozen=True)
class Answer:
    """A mocked HTTP response or exec result: a value, or a failure message."""

    value: Any = None
    failure: str | None = None


@dataclass(frozen=True)
class Expectation:
    matcher: str
    value: Any


@dataclass(frozen=True)
class TestCase:
    name: str
    line: int | None
    events: list[dict]
    now_ms: int
    kv: dict[str, dict[str, Any]]
    http: dict[str, list[Answer]]
    execs: dict[str, list[Answer]]
    expect: dict[str, list[Expectation | None]]
    """Per pipeline, one expectation per event (None: not checked for that event)."""
    effects: dict[str, list[Any]]


@dataclass
class TestFile:
    path: str
    config_path: str
    config: PipelinesConfig | None = None
    tests: list[TestCase] = field(default_factory=list)


def is_test_file(name: str) -> bool:
    return name.endswith(SUFFIXES)


def _dotted(path: Path) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(root)"


class _Reader:
    """Collects problems with positions while checking one file's content."""

    def __init__(self, path: str, positions: dict[Path, tuple[int, int]]) -> None:
        self.path = path
        self.positions = positions
        self.problems: list[str] = []

    def where(self, path: Path) -> str:
        for n in range(len(path), -1, -1):  # the nearest enclosing node that has a position
            if path[:n] in self.positions:
                line, col = self.positions[path[:n]]
                return f"{self.path}:{line}:{col}"
        return self.path

    def problem(self, path: Path, message: str) -> None:
        self.problems.append(f"{self.where(path)}: {_dotted(path)}: {message}")

    def mapping(self, value: Any, path: Path, what: str) -> dict:
        if isinstance(value, dict):
            return value
        if value is not None:
            self.problem(path, f"must be {what}")
        return {}


def _parse_yaml(text: str, path: str) -> tuple[Any, dict[Path, tuple[int, int]]]:
    try:
        import yaml
    except ImportError:
        raise TestFileError([f"{path}: YAML test files need PyYAML (pip install 'agglo[authoring]'); "
                             "or write the tests as .agglo-test.json"]) from None

    class Loader(yaml.SafeLoader):
        """Timestamps stay strings: a test's values are JSON."""

    Loader.add_constructor("tag:yaml.org,2002:timestamp", Loader.construct_yaml_str)
    loader = Loader(text)
    try:
        node = loader.get_single_node()
        data = loader.construct_document(node) if node is not None else None
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else path
        raise TestFileError([f"{where}: not valid YAML: {e.problem or e.context}"]) from None
    except yaml.YAMLError as e:
        raise TestFileError([f"{path}: not valid YAML: {e}"]) from None
    finally:
        loader.dispose()
    positions: dict[Path, tuple[int, int]] = {}

    def walk(n: Any, at: Path) -> None:
        positions.setdefault(at, (n.start_mark.line + 1, n.start_mark.column + 1))
        if isinstance(n, yaml.MappingNode):
            for key, value in n.value:
                name = key.value
                positions[(*at, name)] = (key.start_mark.line + 1, key.start_mark.column + 1)
                walk(value, (*at, name))
        elif isinstance(n, yaml.SequenceNode):
            for i, item in enumerate(n.value):
                walk(item, (*at, i))

    if node is not None:
        walk(node, ())
    return data, positions


def _parse(path: str) -> tuple[Any, dict[Path, tuple[int, int]]]:
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except (OSError, UnicodeDecodeError) as e:
        raise TestFileError([f"{path}: cannot read: {getattr(e, 'strerror', None) or e}"]) from None
    if path.endswith(".json"):
        try:
            return json.loads(text), {}
        except json.JSONDecodeError as e:
            raise TestFileError([f"{path}:{e.lineno}:{e.colno}: not valid JSON: {e.msg}"]) from None
    return _parse_yaml(text, path)


def _answers(r: _Reader, value: Any, path: Path, fields: tuple[str, str]) -> list[Answer]:
    """One answer or a list of them; ``fields`` are (value field, failure field) of an answer."""
    items = value if isinstance(value, list) else [value]
    out = []
    for i, item in enumerate(items):
        at = (*path, i) if isinstance(value, list) else path
        if not isinstance(item, dict) or set(item) - {*fields, "status"}:
            r.problem(at, f"must be an object with {fields[0]} or {fields[1]}"
                          + (" (and status)" if fields[0] == "body" else ""))
            continue
        status = item.get("status", 200)
        if fields[1] in item and not isinstance(item[fields[1]], str):
            r.problem((*at, fields[1]), "must be a string")
        elif fields[0] == "output" and "status" in item:
            r.problem((*at, "status"), "an exec result has output or error, not status")
        elif type(status) is not int or not 100 <= status <= 599:
            r.problem((*at, "status"), "must be an HTTP status code")
        elif fields[1] in item:  # an exec that failed, or an HTTP system that could not be reached
            out.append(Answer(None, item[fields[1]]))
        else:  # an HTTP status other than 2xx fails the POST
            failed = None if 200 <= status < 300 else f"answered {status}: {json.dumps(item.get(fields[0]))}"
            out.append(Answer(item.get(fields[0]), failed))
    if not items:
        r.problem(path, "needs at least one answer")
    return out


def _expectation(r: _Reader, value: Any, path: Path) -> Expectation | None:
    if not isinstance(value, dict) or len(value) != 1 or next(iter(value)) not in MATCHERS:
        r.problem(path, f"must be an object with exactly one of {', '.join(MATCHERS)}")
        return None
    (matcher, expected), = value.items()
    at = (*path, matcher)
    if matcher in ("json_equals", "json_contains") and not isinstance(expected, dict):
        r.problem(at, "must be an object (the pipeline's output event)")
    elif matcher == "absent" and expected is not True:
        r.problem(at, "must be true (the pipeline gives no output and no error)")
    elif matcher == "error_contains" and not isinstance(expected, str):
        r.problem(at, "must be a string")
    else:
        return Expectation(matcher, expected)
    return None


def _now_ms(r: _Reader, value: Any, path: Path) -> int:
    if value is None:
        return 0
    try:
        dt = datetime.fromisoformat(str(value))
        if dt.tzinfo is None:
            raise ValueError
    except ValueError:
        r.problem(path, f"must be an RFC 3339 time with a zone, such as 2024-05-01T12:00:00Z (got {value!r})")
        return 0
    return int(dt.timestamp() * 1000)


def _test(r: _Reader, raw: Any, path: Path, config: PipelinesConfig) -> TestCase | None:
    if not isinstance(raw, dict):
        r.problem(path, "a test must be an object")
        return None
    for key in raw:
        if key not in _TEST_FIELDS:
            r.problem((*path, key), f"unknown field (expected {', '.join(_TEST_FIELDS)})")
    name = raw.get("name")
    if not isinstance(name, str) or not name:
        r.problem((*path, "name"), "every test needs a name")
        name = f"test {path[-1]}"
    given: Any = raw.get("input")
    events = given if isinstance(given, list) else [given]
    if given is None or not events or not all(isinstance(e, dict) for e in events):
        r.problem((*path, "input"), "must be an event (an object) or a list of events")
    externals = {e.name: e.externalType.value for e in config.externalSystems}
    pipelines = [p.name for p in config.pipelines]

    def external(at: Path, name: str, kinds: tuple[str, ...]) -> bool:
        kind = externals.get(name)
        if kind is None:
            r.problem(at, f"no external system named {name!r} in the config (it has: "
                          f"{', '.join(externals) or 'none'})")
        elif kind not in kinds:
            r.problem(at, f"{name!r} is an {kind}, not an {' or '.join(kinds)}")
        return kind in kinds

    kv: dict[str, dict[str, Any]] = {}
    for store, contents in r.mapping(raw.get("kv"), (*path, "kv"), "an object: KV store -> {key: value}").items():
        if external((*path, "kv", store), store, ("ExternalKVStore",)):
            kv[store] = r.mapping(contents, (*path, "kv", store), "an object of key -> value")
    http = {target: _answers(r, answers, (*path, "http", target), ("body", "error"))
            for target, answers in r.mapping(raw.get("http"), (*path, "http"), "an object: HTTP system -> answer").items()
            if external((*path, "http", target), target, ("ExternalHttp",))}
    execs = {exe: _answers(r, answers, (*path, "exec", exe), ("output", "error"))
             for exe, answers in r.mapping(raw.get("exec"), (*path, "exec"), "an object: executable -> result").items()}
    expect: dict[str, list[Expectation | None]] = {}
    for pipe, spec in r.mapping(raw.get("expect"), (*path, "expect"), "an object: pipeline -> expectation").items():
        at = (*path, "expect", pipe)
        if pipe not in pipelines:
            r.problem(at, f"no pipeline named {pipe!r} in the config (it has: {', '.join(pipelines)})")
        elif isinstance(spec, list):
            if len(spec) != len(events):
                r.problem(at, f"has {len(spec)} expectation(s) for {len(events)} event(s): give one per event, "
                              "or one object for the last event")
            expect[pipe] = [None if s is None else _expectation(r, s, (*at, i)) for i, s in enumerate(spec)]
        else:
            expect[pipe] = [*([None] * (len(events) - 1)), _expectation(r, spec, at)]
    effects: dict[str, list[Any]] = {}
    for target, items in r.mapping(raw.get("effects"), (*path, "effects"),
                                   "an object: external system or executable -> list of effects").items():
        at = (*path, "effects", target)
        if target not in externals and "/" not in target:
            r.problem(at, f"no external system named {target!r} in the config (an executable is named by its path)")
        elif not isinstance(items, list):
            r.problem(at, "must be a list of the effects expected there, in order ([] for none)")
        else:
            effects[target] = items
    return TestCase(name, r.positions.get(path, (None,))[0], events, _now_ms(r, raw.get("now"), (*path, "now")),
                    kv, http, execs, expect, effects)


def _default_config(path: str) -> str:
    base = os.path.basename(path)
    for suffix in SUFFIXES:
        if base.endswith(suffix):
            return base[: -len(suffix)] + ".json"
    return base


def _config_path(path: str, data: Any) -> Any:
    """Where the config of the test file at ``path`` is (its ``config``, else the one it is named after);
    the ``config`` value itself when that is not a string."""
    name = data.get("config", _default_config(path)) if isinstance(data, dict) else _default_config(path)
    return os.path.join(os.path.dirname(path), name) if isinstance(name, str) else name


def tested_config(path: str) -> str:
    """The path of the config the test file at ``path`` tests; for a file that cannot be read (or names no
    config) the one it is named after, so that its problems are reported with that config's tests."""
    try:
        data, _ = _parse(path)
    except TestFileError:
        data = None
    config = _config_path(path, data)
    return config if isinstance(config, str) else _config_path(path, None)


def load_test_file(path: str) -> TestFile:
    """The tests in ``path`` and the config they test; ``TestFileError`` listing every problem."""
    data, positions = _parse(path)
    r = _Reader(path, positions)
    if not isinstance(data, dict):
        raise TestFileError([f"{r.where(())}: a test file must be an object with config and tests"])
    for key in data:
        if key not in ("config", "tests"):
            r.problem((key,), "unknown field (expected config, tests)")
    config_path = _config_path(path, data)
    if not isinstance(config_path, str):
        r.problem(("config",), "must be the config's path, relative to this file")
        raise TestFileError(r.problems)
    result = TestFile(path, config_path)
    try:
        with open(result.config_path, "rb") as f:
            result.config = load_config(bounded_config(f.read(MAX_CONFIG_BYTES + 1), result.config_path))
    except OSError as e:
        r.problem(("config",), f"cannot read the config {result.config_path}: {e.strerror}")
    except ConfigTooLarge as e:
        r.problem(("config",), str(e))
    except ConfigError as e:
        r.problems.extend(f"{result.config_path}: {p}" for p in e.problems)
    tests = data.get("tests")
    if not isinstance(tests, list) or not tests:
        r.problem(("tests",), "must be a non-empty list of tests")
    elif result.config is not None:
        names: set[str] = set()
        for i, raw in enumerate(tests):
            case = _test(r, raw, ("tests", i), result.config)
            if case is not None and case.name in names:
                r.problem(("tests", i, "name"), f"another test is named {case.name!r} too")
            elif case is not None:
                names.add(case.name)
                result.tests.append(case)
    if r.problems:
        raise TestFileError(r.problems)
    return result
