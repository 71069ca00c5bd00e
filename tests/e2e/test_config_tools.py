"""The authoring commands (fmt, schema, lint) through the real ``agglo`` command, on files in a temporary directory."""

from __future__ import annotations

import json
import pathlib
import shutil
import subprocess
import sys

import jsonschema
import pytest
from _servers import run_agglo, write_config
from builders import BINGE, config, kv

from agglo_core import load_config

REPO = pathlib.Path(__file__).resolve().parents[2]
EXAMPLES = sorted([*BINGE.glob("*.json"), *(REPO / "pipelines").glob("*.json")])


def conditions_in(data: object) -> list[object]:
    """Every value under a "condition" key (the example configs have no other "condition" keys)."""
    if isinstance(data, dict):
        return [v for k, v in data.items() if k == "condition"] + [
            c for k, v in data.items() if k != "condition" for c in conditions_in(v)]
    if isinstance(data, list):
        return [c for v in data for c in conditions_in(v)]
    return []


def with_text_condition(condition: object) -> dict:
    return config({"continuation": {"name": "C", "condition": condition}},
                  {"tee": {"name": "T", "outputConnectorRef": "Out", "condition": "kind == 'x'",
                           "additionalBody": {"condition": {"keep": "as is"}, "z": 1, "a": 2}}},
                  externals=(kv("Out", "file:out"),))


# --- fmt ---------------------------------------------------------------------------------------------------


def test_fmt_conditions_to_text_and_back_gives_every_example_config_unchanged(tmp_path: pathlib.Path) -> None:
    copies = []
    for i, path in enumerate(EXAMPLES):
        copies.append(tmp_path / f"{i}-{path.name}")
        shutil.copy(path, copies[-1])
    names = [c.name for c in copies]

    to_text = run_agglo(["fmt", "--conditions", "-w", *names], cwd=tmp_path)
    assert to_text.returncode == 0, to_text.stderr.decode()
    texts = [c for copy in copies for c in conditions_in(json.loads(copy.read_text()))]
    assert len(texts) > 40 and all(isinstance(c, str) for c in texts)
    assert "exists(author) && exists(hash) && !exists(githash)" in texts
    assert "`version-control` == 'git-dev'" in texts

    back = run_agglo(["fmt", "--conditions", "--to", "ast", "-w", *names], cwd=tmp_path)
    assert back.returncode == 0, back.stderr.decode()
    for original, copy in zip(EXAMPLES, copies, strict=True):
        assert json.loads(copy.read_text()) == json.loads(original.read_text()), original.name


def test_fmt_prints_one_config_and_rewrites_only_conditions(tmp_path: pathlib.Path) -> None:
    original = with_text_condition({"expression": {"comparator": {
        "op": "GreaterThanOrEqual", "lhs": {"variable": {"name": "n"}}, "rhs": {"numeric": 3}}}})
    write_config(tmp_path / "c.json", original)

    done = run_agglo(["fmt", "--conditions", "c.json"], cwd=tmp_path)
    assert done.returncode == 0, done.stderr.decode()
    out = json.loads(done.stdout)
    defs = out["processDefinitions"]
    assert defs[0]["continuation"]["condition"] == "n >= 3"
    assert defs[1]["tee"]["condition"] == "kind == 'x'"
    assert defs[1]["tee"]["additionalBody"] == {"condition": {"keep": "as is"}, "z": 1, "a": 2}
    assert list(defs[1]["tee"]["additionalBody"]) == ["condition", "z", "a"]
    assert {k: v for k, v in out.items() if k != "processDefinitions"} == {
        k: v for k, v in original.items() if k != "processDefinitions"}

    as_ast = run_agglo(["fmt", "--conditions", "--to", "ast", "c.json"], cwd=tmp_path)
    assert as_ast.returncode == 0, as_ast.stderr.decode()
    tee = json.loads(as_ast.stdout)["processDefinitions"][1]["tee"]
    assert tee["condition"] == {"expression": {"comparator": {
        "lhs": {"variable": {"name": "kind"}}, "rhs": {"literal": "x"}, "op": "Equal"}}}

    plain = run_agglo(["fmt", "c.json"], cwd=tmp_path)
    assert json.loads(plain.stdout) == original
    assert plain.stdout.decode().startswith('{\n  "partitionUuid"')


def test_fmt_reports_a_syntax_error_with_path_line_and_column(tmp_path: pathlib.Path) -> None:
    write_config(tmp_path / "c.json", with_text_condition("n >= 3 &&\n  (kind == 'x'"))
    done = run_agglo(["fmt", "--conditions", "--to", "ast", "c.json"], cwd=tmp_path)
    assert done.returncode == 1
    assert done.stdout == b""
    err = done.stderr.decode()
    assert err.startswith("c.json: processDefinitions[0].continuation.condition: line 2, column 15: "
                          "expected ')', found the end of the condition\n")
    source, pointer = err.splitlines()[1:3]
    assert source == "      (kind == 'x'" and pointer == " " * 18 + "^"


def test_fmt_reports_every_problem_of_a_bad_config_and_usage_errors(tmp_path: pathlib.Path) -> None:
    bad = with_text_condition("n >= 3")
    bad["processDefinitions"][0]["continuation"]["conditon"] = "typo"
    bad["pipelines"][0]["processes"].append({"name": "Nowhere"})
    write_config(tmp_path / "bad.json", bad)
    done = run_agglo(["fmt", "bad.json"], cwd=tmp_path)
    assert done.returncode == 1
    assert done.stderr.decode().splitlines() == [
        "bad.json: processDefinitions[0].continuation.conditon: unknown field",
        "bad.json: pipelines[0].processes[2].name: no process definition named 'Nowhere'",
    ]
    (tmp_path / "notjson.json").write_text("{")
    assert run_agglo(["fmt", "notjson.json"], cwd=tmp_path).stderr.startswith(b"notjson.json: (root): not valid JSON")

    usage = run_agglo(["fmt", "--to", "ast", "bad.json"], cwd=tmp_path)
    assert usage.returncode == 2 and b"--to says which form --conditions writes" in usage.stderr
    assert run_agglo(["fmt", "a.json", "b.json"], cwd=tmp_path).returncode == 2
    missing = run_agglo(["fmt", "missing.json"], cwd=tmp_path)
    assert missing.returncode == 2 and b"cannot read config missing.json" in missing.stderr


# --- schema ---------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def schema(tmp_path_factory: pytest.TempPathFactory) -> jsonschema.Draft202012Validator:
    done = run_agglo(["schema"], cwd=tmp_path_factory.mktemp("schema"))
    assert done.returncode == 0, done.stderr.decode()
    document = json.loads(done.stdout)
    jsonschema.Draft202012Validator.check_schema(document)
    return jsonschema.Draft202012Validator(document)


def test_schema_accepts_every_example_config(schema: jsonschema.Draft202012Validator) -> None:
    for path in EXAMPLES:
        assert [e.message for e in schema.iter_errors(json.loads(path.read_text()))] == [], path.name


def test_schema_accepts_conditions_as_text_or_ast(schema: jsonschema.Draft202012Validator) -> None:
    ast = {"exists": {"ops": [{"key": "a", "op": "Exists"}]}}
    protojson = {"expression": {"comparator": {"op": 23, "lhs": {"variable": {"name": "a"}}, "rhs": {"numeric": 1}}}}
    for condition in ("a.b == 'x' && n >= 3", ast, {}, protojson):
        assert list(schema.iter_errors(with_text_condition(condition))) == []
        load_config(with_text_condition(condition))


def test_schema_accepts_protojson_int64_strings_as_validation_does(schema: jsonschema.Draft202012Validator) -> None:
    completer = {"completer": {"name": "J", "stateStore": "State", "completion": {"joinKeys": ["k"],
                                                                                 "timeoutMs": "5000"}}}
    cfg = config(completer, externals=(kv("State", "mem:s"),))
    load_config(cfg)
    assert list(schema.iter_errors(cfg)) == []
    completer["completer"]["completion"]["timeoutMs"] = "5s"
    assert list(schema.iter_errors(cfg)) != []


@pytest.mark.parametrize(("change", "where"), [
    (lambda c: c["processDefinitions"][0]["continuation"].update(condition=3), "condition"),
    (lambda c: c["processDefinitions"][0]["continuation"].update(conditon="x == 1"), "conditon"),
    (lambda c: c["processDefinitions"][0]["continuation"].update(condition={"exists": {"ops": [{"op": "Maybe"}]}}),
     "Maybe"),
    (lambda c: c["externalSystems"][0].update(externalType="ExternalKV"), "ExternalKV"),
    (lambda c: c.pop("partitionUuid"), "partitionUuid"),
])
def test_schema_rejects_what_validation_rejects(schema: jsonschema.Draft202012Validator, change, where: str) -> None:
    bad = with_text_condition("n >= 3")
    change(bad)
    errors = list(schema.iter_errors(bad))
    assert errors and any(where in (e.message + json.dumps(list(e.absolute_path))) for e in errors), errors


# --- lint -----------------------------------------------------------------------------------------------------


def reviewed() -> dict:
    """Valid, with two warnings: an unreachable annotator and a condition comparing a number with a string."""
    return config({"continuation": {"name": "C", "condition": "n + 1 == 'x'"}},
                  {"annotator": {"name": "Spare", "annotations": [{"fieldKey": "k", "value": "v"}]}},
                  {"spawner": {"name": "S", "job": {"runnable": {"pathToExec": "/bin/echo"}}}},
                  order=["C", "S"])


def test_lint_prints_warnings_and_exits_0_or_1_with_strict(tmp_path: pathlib.Path) -> None:
    write_config(tmp_path / "c.json", reviewed())
    done = run_agglo(["lint", "c.json", "--allow-exec", "/bin/echo"], cwd=tmp_path)
    assert done.returncode == 0, done.stderr.decode()
    assert done.stdout.decode().splitlines() == [
        "c.json: processDefinitions[1].annotator.name: warning: no pipeline runs annotator 'Spare' and no tee uses "
        "it [unreachable-process]",
        "c.json: processDefinitions[0].continuation.condition: warning: this condition is never true: n + 1 is a "
        "number and 'x' is a string; values of different JSON types are never equal or ordered "
        "[condition-never-true]",
    ]
    strict = run_agglo(["lint", "--strict", "c.json"], cwd=tmp_path, env={"AGGLO_ALLOW_EXEC": "/bin/echo"})
    assert strict.returncode == 1 and strict.stdout == done.stdout

    exec_warned = run_agglo(["lint", "c.json"], cwd=tmp_path)
    assert b"[exec-not-allowed]" in exec_warned.stdout and exec_warned.returncode == 0


def test_lint_json_lists_errors_and_warnings_of_several_configs(tmp_path: pathlib.Path) -> None:
    write_config(tmp_path / "warned.json", reviewed())
    bad = reviewed()
    bad["processDefinitions"][0]["continuation"]["condition"] = "n + 1 == 'x"
    bad["pipelines"][0]["processes"].append({"name": "Nowhere"})
    write_config(tmp_path / "bad.json", bad)
    write_config(tmp_path / "clean.json", config({"continuation": {"name": "C", "condition": "n >= 3"}}))

    done = run_agglo(["lint", "--format", "json", "clean.json", "warned.json", "bad.json"], cwd=tmp_path,
                     env={"AGGLO_ALLOW_EXEC": "/bin/echo"})
    assert done.returncode == 1
    found = json.loads(done.stdout)
    assert [(f["config"], f["level"], f["rule"], f["path"]) for f in found] == [
        ("warned.json", "warning", "unreachable-process", "processDefinitions[1].annotator.name"),
        ("warned.json", "warning", "condition-never-true", "processDefinitions[0].continuation.condition"),
        ("bad.json", "error", "invalid-config", "processDefinitions[0].continuation.condition"),
        ("bad.json", "error", "invalid-config", "pipelines[0].processes[2].name"),
    ]
    assert found[2]["message"].startswith("line 1, column 10: unterminated string: no closing '\n")
    assert found[3]["message"] == "no process definition named 'Nowhere'"

    clean = run_agglo(["lint", "clean.json"], cwd=tmp_path)
    assert (clean.returncode, clean.stdout) == (0, b"")
    assert run_agglo(["lint", "missing.json"], cwd=tmp_path).returncode == 2


def test_lint_on_the_example_configs(tmp_path: pathlib.Path) -> None:
    done = run_agglo(["lint", "--format", "json", *map(str, EXAMPLES)], cwd=tmp_path)
    found = json.loads(done.stdout)
    by_config = {pathlib.Path(f["config"]).name: [] for f in found}
    for f in found:
        by_config[pathlib.Path(f["config"]).name].append((f["level"], f["rule"]))
    # Entwine's key files are not there (the README's example creates them): a warning, since running needs
    # them and checking does not. binge's entwine configs name an ExternalSearchIndex (no connector serves
    # one). The spawners' executables are not allowed by default.
    assert by_config == {
        "entwine-a.json": [("warning", "key-unreadable")],
        "entwine-b.json": [("warning", "key-unreadable")],
        "entwine__binge-a.json": [("error", "invalid-config")],
        "entwine__binge-b.json": [("error", "invalid-config")],
        "single-entwine-news__binge.json": [("error", "invalid-config")],
        "nlp-preprocess__nlp-pipeline.json": [("warning", "exec-not-allowed")],
        "test-basic_pipeline.json": [("warning", "exec-not-allowed")],
        # binge's own test config sets a pipeline checkpoint and enableMetrics, which agglo ignores.
        "test-slow_spawner_pipeline.json": [("warning", "ignored-field"), ("warning", "ignored-field"),
                                            ("warning", "exec-not-allowed")],
    }
    assert done.returncode == 1


def test_running_a_pipeline_loads_none_of_the_authoring_modules(tmp_path: pathlib.Path) -> None:
    probe = ("import sys, handlers.local, handlers.aws_lambda, agglo_core; "
             "agglo_core.load_config(open(sys.argv[1]).read()); "
             "print(sorted(m for m in sys.modules if m.startswith('handlers.authoring') "
             "or m in ('agglo_core.lint', 'agglo_core.condition_syntax')))")
    done = subprocess.run([sys.executable, "-c", probe, str(REPO / "pipelines" / "basic.json")], cwd=tmp_path,
                          capture_output=True, check=True)
    assert done.stdout == b"[]\n"
