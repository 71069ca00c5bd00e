"""Config unit tests: matchers, mocks answered in turn, effects compared, problems found before running."""

from __future__ import annotations

import io
import json
import pathlib

import pytest
from builders import config, external
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agglo_core import Plan
from handlers.authoring import testfile
from handlers.authoring.testing import files_testing, run_files, run_test


def hook_config() -> dict:
    return config(
        {"tee": {"name": "Notify", "outputConnectorRef": "Webhook"}},
        {"annotator": {"name": "Mark", "annotations": [{"fieldKey": "flag", "value": "true"}]}},
        {"spawner": {"name": "Score", "doSync": True, "job": {"runnable": {"pathToExec": "/opt/score"}}}},
        externals=(external("ExternalHttp", "Webhook", "http://127.0.0.1:9/"),), retries=2)


def failures(tmp_path: pathlib.Path, tests: list[dict], cfg: dict | None = None) -> list[list[str]]:
    (tmp_path / "c.json").write_text(json.dumps(cfg or hook_config()))
    path = tmp_path / "c.agglo-test.json"
    path.write_text(json.dumps({"tests": tests}))
    tf = testfile.load_test_file(str(path))
    plan = Plan(tf.config)  # type: ignore[arg-type]
    return [run_test(tf, plan, case) for case in tf.tests]


def test_matchers(tmp_path):
    exec_ok = {"/opt/score": {"output": 1}}
    results = failures(tmp_path, [
        {"name": "equals ignores unnamed internals", "input": {"n": 1}, "exec": exec_ok,
         "expect": {"P": {"json_equals": {"n": 1, "flag": "true"}}}},
        {"name": "equals names an internal", "input": {"n": 1}, "exec": exec_ok,
         "expect": {"P": {"json_equals": {"n": 1, "flag": "true", "internal:name": "P"}}}},
        {"name": "true is not 1", "input": {"n": True}, "exec": exec_ok,
         "expect": {"P": {"json_contains": {"n": 1}}}},
        {"name": "1.0 is 1", "input": {"n": 1.0}, "exec": exec_ok, "expect": {"P": {"json_contains": {"n": 1}}}},
        {"name": "lists element by element", "input": {"l": [{"a": 1, "b": 2}]}, "exec": exec_ok,
         "expect": {"P": {"json_contains": {"l": [{"a": 1}]}}}},
        {"name": "an error is not absent", "input": {"n": 1},
         "expect": {"P": {"absent": True}}},
        {"name": "error_contains", "input": {"n": 1}, "expect": {"P": {"error_contains": "has no mock"}}},
        {"name": "field exists", "input": {"flag": "x"}, "exec": exec_ok,
         "expect": {"P": {"error_contains": "already"}}},
    ])
    assert results[0] == [] and results[1] == [] and results[3] == [] and results[4] == []
    assert results[6] == [] and results[7] == []
    assert "output differs (json_contains)" in results[2][0] and '-  "n": 1\n+  "n": true' in results[2][0]
    assert results[5][0].startswith("pipeline P: expected no output, it failed in process 'Score': '/opt/score' "
                                    "failed: executable '/opt/score' has no mock in this test")


def test_http_and_exec_answers_are_used_in_turn_and_retries_are_recorded(tmp_path):
    (ok, failing, unreachable) = failures(tmp_path, [
        {"name": "in turn", "input": [{"n": 1}, {"n": 2}],
         "http": {"Webhook": [{"body": {"id": 1}}, {"body": {"id": 2}}]},
         "exec": {"/opt/score": [{"output": 10}, {"output": 20}]},
         "expect": {"P": [{"json_contains": {"internal:tee:output": [{"response": {"id": 1}}],
                                             "internal:spawn:output": [{"Score": 10}]}},
                          {"json_contains": {"internal:tee:output": [{"response": {"id": 2}}],
                                             "internal:spawn:output": [{"Score": 20}]}}]},
         "effects": {"Webhook": [{"body": {"n": 1}}, {"body": {"n": 2}}],
                     "/opt/score": [{"input": {"n": 1, "flag": "true"}}, {"input": {"n": 2}}]}},
        {"name": "retried", "input": {"n": 1}, "http": {"Webhook": [{"status": 500}, {"status": 502}]},
         "expect": {"P": {"error_contains": "answered 502"}},
         "effects": {"Webhook": [{"body": {"n": 1}}, {"body": {"n": 1}}]}},
        {"name": "unreachable", "input": {"n": 1}, "http": {"Webhook": {"error": "connection refused"}},
         "expect": {"P": {"error_contains": "connection refused"}}, "effects": {"Webhook": []}},
    ])
    assert ok == []
    assert len(failing) == 1 and "effects on Webhook differ (2 expected, 3 performed)" in failing[0]
    assert len(unreachable) == 1 and "effects on Webhook differ (0 expected, 3 performed)" in unreachable[0]


@pytest.mark.parametrize(("test", "problem"), [
    ({"name": "x", "input": {}, "kv": {"Nope": {}}}, "tests[0].kv.Nope: no external system named 'Nope'"),
    ({"name": "x", "input": {}, "http": {"Webhook": {"status": 99}}}, "tests[0].http.Webhook.status: must be an "
                                                                       "HTTP status code"),
    ({"name": "x", "input": [{}, {}], "expect": {"P": [{"absent": True}]}},
     "tests[0].expect.P: has 1 expectation(s) for 2 event(s)"),
    ({"name": "x", "input": {}, "expect": {"P": {"absent": False}}}, "tests[0].expect.P.absent: must be true"),
    ({"name": "x", "input": {}, "effects": {"Webhook": {"body": {}}}}, "tests[0].effects.Webhook: must be a list"),
    ({"name": "x", "input": "event"}, "tests[0].input: must be an event (an object) or a list of events"),
])
def test_problems_in_a_test_file_are_found_before_anything_runs(tmp_path, test, problem):
    with pytest.raises(testfile.TestFileError) as caught:
        failures(tmp_path, [test])
    assert any(problem in p for p in caught.value.problems), caught.value.problems


def test_a_missing_config_and_a_run_summary(tmp_path):
    (tmp_path / "lost.agglo-test.yaml").write_text("tests:\n  - name: x\n    input: {}\n")
    (tmp_path / "c.json").write_text(json.dumps(hook_config()))
    (tmp_path / "c.agglo-test.yaml").write_text(
        "tests:\n  - name: ok\n    input: {}\n    exec: {/opt/score: {output: 1}}\n"
        "    expect: {P: {json_contains: {flag: 'true'}}}\n")
    out = io.StringIO()
    assert run_files([str(tmp_path)], out) == 2
    text = out.getvalue()
    assert "c.agglo-test.yaml .\n" in text and "lost.agglo-test.yaml E\n" in text
    assert f"lost.agglo-test.yaml:1:1: config: cannot read the config {tmp_path}/lost.json" in text
    assert text.rstrip().endswith("1 passed, 0 failed, 1 error(s) " + "=" * 24)


# --- a test that compares nothing still asks that every event goes through -----------------------------------

def mark_config() -> dict:
    """One annotator: it fails an event that already has the field it sets."""
    return config({"annotator": {"name": "Mark", "annotations": [{"fieldKey": "flag", "value": "true"}]}})


EVENTS = st.lists(st.fixed_dictionaries({"n": st.integers(-(2**63), 2**64 - 1)}, optional={"flag": st.text(max_size=3)}),
                  min_size=1, max_size=5)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(events=EVENTS)
def test_a_test_with_neither_expect_nor_effects_fails_exactly_when_an_event_fails(tmp_path, events):
    [found] = failures(tmp_path, [{"name": "goes through", "input": events}], mark_config())
    failing = [i + 1 for i, e in enumerate(events) if "flag" in e]
    assert len(found) == len(failing)
    for problem, number in zip(found, failing, strict=True):
        which = f", event {number}" if len(events) > 1 else ""
        assert problem.startswith(f"pipeline P{which}: it failed in process 'Mark': ")
        assert "flag" in problem  # the pipeline's own error is reported


def test_expect_or_effects_decide_alone_whether_a_failing_pipeline_fails_the_test(tmp_path):
    flagged = {"flag": "x"}
    results = failures(tmp_path, [
        {"name": "failure expected", "input": flagged, "expect": {"P": {"error_contains": "flag"}}},
        {"name": "effects only", "input": flagged, "effects": {"/opt/tool": []}},
        {"name": "nothing compared", "input": flagged},
    ], mark_config())
    assert results[0] == [] and results[1] == []
    assert len(results[2]) == 1 and "it failed in process 'Mark'" in results[2][0]


def test_a_failing_test_that_compares_nothing_is_reported_by_agglo_test(tmp_path):
    (tmp_path / "c.json").write_text(json.dumps(mark_config()))
    (tmp_path / "c.agglo-test.json").write_text(json.dumps({"tests": [
        {"name": "clean", "input": {"n": 1}}, {"name": "flagged", "input": {"flag": 1}}]}))
    out = io.StringIO()
    assert run_files([str(tmp_path)], out) == 1
    assert "c.agglo-test.json .F\n" in out.getvalue() and "1 passed, 1 failed" in out.getvalue()


# --- -c CONFIG: the tests of a config ----------------------------------------------------------------------------

def test_the_tests_of_a_config_are_the_files_beside_it_that_test_it(tmp_path, monkeypatch):
    (tmp_path / "a.json").write_text(json.dumps(mark_config()))
    (tmp_path / "b.json").write_text(json.dumps(mark_config()))
    case = {"tests": [{"name": "t", "input": {"n": 1}}]}
    (tmp_path / "a.agglo-test.json").write_text(json.dumps(case))                        # by its name
    (tmp_path / "more.agglo-test.json").write_text(json.dumps({"config": "a.json", **case}))  # by config:
    (tmp_path / "b.agglo-test.json").write_text(json.dumps(case))                        # another config's
    (tmp_path / "odd.agglo-test.json").write_text(json.dumps({"config": "./b.json", **case}))
    (tmp_path / "a.agglo-test.yaml").write_text("tests: [unclosed\n")                    # broken, named after a
    assert files_testing(str(tmp_path / "a.json")) == [str(tmp_path / n) for n in (
        "a.agglo-test.json", "a.agglo-test.yaml", "more.agglo-test.json")]
    assert files_testing(str(tmp_path / "b.json")) == [str(tmp_path / n) for n in ("b.agglo-test.json",
                                                                                "odd.agglo-test.json")]
    monkeypatch.chdir(tmp_path)
    assert files_testing("b.json") == ["b.agglo-test.json", "odd.agglo-test.json"]
    out = io.StringIO()  # a file given both ways runs once
    assert run_files(["b.agglo-test.json"], out, ["b.json"]) == 0
    assert out.getvalue().count("b.agglo-test.json") == 1 and "2 passed, 0 failed" in out.getvalue()


def test_a_config_without_tests_or_missing_is_a_usage_error(tmp_path, capsys):
    (tmp_path / "a.json").write_text(json.dumps(mark_config()))
    assert run_files([], io.StringIO(), [str(tmp_path / "a.json")]) == 2
    assert f"no test file beside {tmp_path}/a.json tests it" in capsys.readouterr().err
    assert run_files([], io.StringIO(), [str(tmp_path / "gone.json")]) == 2
    assert f"no such file or directory: {tmp_path}/gone.json" in capsys.readouterr().err
