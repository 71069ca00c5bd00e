"""The authoring commands through the real ``agglo`` executable: test, genevents, graph, run --explain."""

from __future__ import annotations

import json
import pathlib
import re
import subprocess
import sys
import xml.dom.minidom

import yaml
from _servers import json_lines, run_agglo, write_config
from builders import config, external

REPO = pathlib.Path(__file__).resolve().parents[2]
GENERATORS = REPO / "tests" / "fixtures" / "binge" / "generators"


def summary(stdout: bytes) -> tuple[int, int]:
    found = re.search(r"(\d+) passed, (\d+) failed", stdout.decode())
    assert found, stdout.decode()
    return int(found[1]), int(found[2])


# --- agglo test --------------------------------------------------------------------------------------------


def test_the_example_pipelines_pass_their_tests():
    files = sorted((REPO / "pipelines").glob("*.agglo-test.yaml"))
    assert {f.name.split(".")[0] for f in files} >= {"basic", "traffic-bifurcate"}
    cases = sum(len(yaml.safe_load(f.read_text())["tests"]) for f in files)
    result = run_agglo(["test", "pipelines/"], REPO)
    assert result.returncode == 0, result.stdout.decode() + result.stderr.decode()
    assert summary(result.stdout) == (cases, 0)
    assert not (REPO / "pipelines" / "out").exists()


def test_c_runs_the_tests_of_one_config_and_positional_paths_add_to_them():
    cases = len(yaml.safe_load((REPO / "pipelines" / "basic.agglo-test.yaml").read_text())["tests"])
    only = run_agglo(["test", "-c", "pipelines/basic.json"], REPO)
    assert only.returncode == 0, only.stdout.decode() + only.stderr.decode()
    assert only.stdout.decode().splitlines()[0].startswith("pipelines/basic.agglo-test.yaml ")
    assert "traffic-bifurcate" not in only.stdout.decode() and summary(only.stdout) == (cases, 0)
    both = run_agglo(["test", "-c", "pipelines/basic.json", "pipelines/gcp.agglo-test.yaml"], REPO)
    assert both.returncode == 0 and "pipelines/gcp.agglo-test.yaml ." in both.stdout.decode()
    assert summary(both.stdout)[0] > cases
    missing = run_agglo(["test", "-c", "pipelines/entwine-a.json"], REPO)
    assert missing.returncode == 2 and b"no test file beside pipelines/entwine-a.json tests it" in missing.stderr


def mocked_config(tmp_path: pathlib.Path) -> pathlib.Path:
    """A tee to an HTTP service and a spawner whose executable would leave a mark if it ever ran."""
    marker = tmp_path / "ran"
    tool = tmp_path / "enrich.sh"
    tool.write_text(f"#!/bin/sh\ntouch {marker}\necho '{{\"real\": true}}'\n")
    tool.chmod(0o755)
    cfg = config(
        {"tee": {"name": "Notify", "outputConnectorRef": "Webhook"}},
        {"spawner": {"name": "Enrich", "doSync": True, "job": {"runnable": {"pathToExec": str(tool)}}}},
        externals=(external("ExternalHttp", "Webhook", "http://127.0.0.1:9/hook"),), retries=1)
    return write_config(tmp_path / "hooks.json", cfg)


MOCKED_TESTS = """\
tests:
  - name: the webhook's answer and the tool's result land on the event
    input: {n: 1}
    http:
      Webhook: {status: 200, body: {ok: true}}
    exec:
      TOOL: {output: {score: 5}}
    expect:
      P:
        json_contains:
          internal:tee:output: [{outputType: web, response: {ok: true}}]
          internal:spawn:output: [{Enrich: {score: 5}}]
    effects:
      Webhook: [{body: {n: 1}}]
      TOOL: [{input: {n: 1}}]

  - name: a failing webhook is retried, then fails the record
    input: {n: 2}
    http:
      Webhook: {status: 503, body: {error: busy}}
    expect:
      P: {error_contains: "answered 503"}
    effects:
      Webhook: [{body: {n: 2}}, {body: {n: 2}}]

  - name: an executable without a mock fails (this test is meant to fail)
    input: {n: 3}
    expect:
      P:
        json_contains: {n: 4}
"""


def test_mocked_http_and_exec_with_one_failing_test(tmp_path):
    cfg = mocked_config(tmp_path)
    tool = str(tmp_path / "enrich.sh")
    (tmp_path / "hooks.agglo-test.yaml").write_text(MOCKED_TESTS.replace("TOOL", tool))
    result = run_agglo(["test", str(tmp_path)], tmp_path)
    out = result.stdout.decode()
    assert result.returncode == 1, out + result.stderr.decode()
    assert summary(result.stdout) == (2, 1)
    assert re.search(r"hooks\.agglo-test\.yaml \.\.F\n", out)
    assert "an executable without a mock fails" in out
    assert f"executable '{tool}' has no mock in this test" in out
    assert not (tmp_path / "ran").exists(), "a mocked test ran a real executable"
    assert cfg.exists()


def test_a_failure_shows_a_unified_diff_of_pretty_json(tmp_path):
    (tmp_path / "basic.json").write_text((REPO / "pipelines" / "basic.json").read_text())
    (tmp_path / "basic.agglo-test.json").write_text(json.dumps({"tests": [{
        "name": "wrong sum", "input": {"someNum": 3},
        "expect": {"BasicPipeline": {"json_contains": {
            "internal:aggregation:BasicPipeline": {"someNum:AggSum": {"value": 4}}}}}}]}))
    result = run_agglo(["test", "basic.agglo-test.json"], tmp_path)
    out = result.stdout.decode()
    assert result.returncode == 1
    assert "pipeline BasicPipeline: output differs (json_contains):\n--- expected\n+++ actual\n" in out
    assert '-      "value": 4\n+      "value": 3\n' in out
    assert summary(result.stdout) == (0, 1)


def test_json_test_files_need_no_yaml(tmp_path):
    (tmp_path / "basic.json").write_text((REPO / "pipelines" / "basic.json").read_text())
    (tmp_path / "basic.agglo-test.json").write_text(json.dumps({"tests": [{
        "name": "annotates", "input": {"someDict": {"someFixed": "foobar"}},
        "expect": {"BasicPipeline": {"json_contains": {"foobar": "found"}}}}]}))
    (tmp_path / "other.agglo-test.yaml").write_text("tests: []\n")
    no_yaml = tmp_path / "no-yaml"
    (no_yaml / "yaml").mkdir(parents=True)
    (no_yaml / "yaml" / "__init__.py").write_text("raise ImportError('PyYAML is not installed')\n")
    env = {"PYTHONPATH": str(no_yaml)}
    result = run_agglo(["test", "basic.agglo-test.json"], tmp_path, env=env)
    assert result.returncode == 0, result.stdout.decode() + result.stderr.decode()
    assert summary(result.stdout) == (1, 0)
    result = run_agglo(["test", "other.agglo-test.yaml"], tmp_path, env=env)
    assert result.returncode == 2
    assert "YAML test files need PyYAML (pip install 'agglo[authoring]')" in result.stdout.decode()


def test_broken_test_files_are_reported_with_line_and_column(tmp_path):
    (tmp_path / "basic.json").write_text((REPO / "pipelines" / "basic.json").read_text())
    (tmp_path / "syntax.agglo-test.yaml").write_text(
        "config: basic.json\ntests:\n  - name: x\n    input: {someNum: 3\n    expect: {}\n")
    (tmp_path / "fields.agglo-test.yaml").write_text(
        "config: basic.json\ntests:\n  - name: x\n    input: {someNum: 3}\n    expect:\n"
        "      BasicPipelin: {absent: true}\n      BasicPipeline: {json_containz: {}}\n")
    (tmp_path / "syntax.agglo-test.json").write_text('{"config": "basic.json",\n "tests": [}\n')
    result = run_agglo(["test", "."], tmp_path)
    out = result.stdout.decode()
    assert result.returncode == 2, out
    assert re.search(r"syntax\.agglo-test\.yaml:5:11: not valid YAML: expected ',' or '}'", out), out
    assert re.search(r"syntax\.agglo-test\.json:2:12: not valid JSON", out), out
    assert ("fields.agglo-test.yaml:6:7: tests[0].expect.BasicPipelin: no pipeline named 'BasicPipelin' "
            "in the config (it has: BasicPipeline)") in out
    assert ("fields.agglo-test.yaml:7:7: tests[0].expect.BasicPipeline: must be an object with exactly one "
            "of json_equals, json_contains, absent, error_contains") in out
    assert "0 passed, 0 failed, 3 error(s)" in out


# --- agglo genevents ---------------------------------------------------------------------------------------


def test_genevents_is_repeatable_with_a_seed():
    schema = str(GENERATORS / "examples__basic__basic_event_gen.json")
    first = run_agglo(["genevents", "-s", schema, "-n", "25", "--seed", "4"], REPO)
    again = run_agglo(["genevents", "-s", schema, "-n", "25", "--seed", "4"], REPO)
    other = run_agglo(["genevents", "-s", schema, "-n", "25", "--seed", "5"], REPO)
    assert first.returncode == 0, first.stderr.decode()
    events = json_lines(first.stdout)
    assert len(events) == 25 and all(isinstance(e, dict) for e in events)
    assert first.stdout == again.stdout and first.stdout != other.stdout


def test_genevents_names_the_json_path_of_a_bad_generator(tmp_path):
    (tmp_path / "bad.json").write_text(json.dumps({"schemas": [
        {"name": "a", "root": {"kvs": {"when": {"dict": {"kvs": {"at": {"timestamp": {}}}}}}}}]}))
    (tmp_path / "broken.json").write_text('{"schemas": [\n  {"name": }]}')
    result = run_agglo(["genevents", "-s", "bad.json"], tmp_path)
    assert result.returncode == 2 and not result.stdout
    assert "bad.json: schemas[0].root.kvs.when.dict.kvs.at: unknown generator 'timestamp'" in result.stderr.decode()
    result = run_agglo(["genevents", "-s", "broken.json"], tmp_path)
    assert result.returncode == 2
    assert "broken.json:2:12: not valid JSON" in result.stderr.decode()


# --- agglo graph -------------------------------------------------------------------------------------------


def test_graph_draws_the_pipeline_in_each_format(tmp_path):
    mermaid = run_agglo(["graph", "pipelines/traffic-bifurcate.json"], REPO)
    assert mermaid.returncode == 0, mermaid.stderr.decode()
    text = mermaid.stdout.decode()
    assert text.startswith("flowchart TD\n")
    assert 'p0_0 -.->|"if doTest == \'true\'"| x0' in text
    assert 'x0[("ServiceB<br/>LocalFile: out/service-test")]' in text
    svg = run_agglo(["graph", "pipelines/basic.json", "--format", "svg"], REPO)
    doc = xml.dom.minidom.parseString(svg.stdout)
    texts = {t.firstChild.data for t in doc.getElementsByTagName("text")}
    assert {"BasicPipeline", "AnnotateFooBar", "foobar = \"found\" if someDict.someFixed == 'foobar'"} <= texts
    write_config(tmp_path / "bad.json", {"partitionUuid": "nope", "pipelines": []})
    bad = run_agglo(["graph", "bad.json", "--format", "dot"], tmp_path)
    assert bad.returncode == 2 and "partitionUuid: 'nope' is not a UUID" in bad.stderr.decode()


def test_the_readme_shows_the_basic_pipelines_picture():
    readme = (REPO / "README.md").read_text()
    drawn = run_agglo(["graph", "pipelines/basic.json"], REPO).stdout.decode()
    assert f"```mermaid\n{drawn}```" in readme


# --- agglo run --explain -----------------------------------------------------------------------------------


def test_explain_shows_why_an_event_went_where_it_went(tmp_path):
    cfg = json.loads((REPO / "pipelines" / "traffic-bifurcate.json").read_text())
    for ext in cfg["externalSystems"]:
        ext["connectionString"] = f"mem:{ext['name']}"
        ext["externalType"] = "ExternalObjectStore"
    write_config(tmp_path / "mirror.json", cfg)
    events = b'{"someNum": 5, "doTest": "true"}\n{"someNum": 6, "doTest": "false"}\n{"someNum": 7}\n'
    result = run_agglo(["run", "-c", "mirror.json", "--explain", "2"], tmp_path, stdin=events)
    text = result.stdout.decode()
    assert result.returncode == 0, result.stderr.decode()
    assert text.count("\nevent ") == 1 and text.startswith("event 1 (stdin#1)") and "event 3" not in text
    first, second = text.split("\nevent 2 (stdin#2)")
    assert "  1. Forward to Test (tee)\n       condition: doTest == 'true' -> true\n" in first
    assert "       effect: Put -> ServiceB " in first
    assert "condition: doTest == 'true' -> false" in second and "Put -> ServiceB" not in second
    assert "=> output: " in second


def test_run_without_explain_and_the_lambda_handler_load_no_authoring_module(tmp_path):
    write_config(tmp_path / "c.json", config({"annotator": {"name": "A", "annotations": [
        {"fieldKey": "k", "value": "v"}]}}))
    probe = ("import sys, handlers.local as local, handlers.aws_lambda\n"
             "status = local.main(['run', '-c', 'c.json', '-i', 'e.jsonl', '-o', 'out.jsonl'])\n"
             "print(status, sorted(m for m in sys.modules if m.startswith('handlers.authoring')))\n")
    (tmp_path / "e.jsonl").write_text('{"a": 1}\n')
    result = subprocess.run([sys.executable, "-c", probe], cwd=tmp_path, capture_output=True, check=False)
    assert result.stdout.decode().strip() == "0 []", result.stderr.decode()
