"""The authoring commands through the real ``agglo`` executable: test, genevents, graph, run --explain."""

from __future__ import annotations

import json
import pathlib
import re

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
