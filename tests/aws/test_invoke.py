"""``agglo invoke`` as a subprocess, against the tests' moto server: the sample events in events/."""

from __future__ import annotations

import io
import json
import os
import pathlib
import subprocess
import sys
import urllib.request
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
EVENTS = ROOT / "events"
TEMPLATE = ROOT / "template.yaml"
FAKE_AWS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_REGION": "us-east-1"}
TABLE, BUCKET, QUEUE, INPUT_BUCKET = "agglo-state", "agglo-output", "agglo-output", "agglo-input-example"


def _sum_of_some_num(path: pathlib.Path) -> int:
    return sum(json.loads(line).get("someNum", 0) for line in path.read_text().splitlines() if line.strip())


@dataclass
class Stack:
    """The resources template.yaml's environment points at, made in moto."""

    url: str
    env_json: pathlib.Path
    dynamodb: Any
    s3: Any
    sqs: Any
    queue_url: str

    def aggregate(self) -> int | None:
        items = self.dynamodb.scan(TableName=TABLE)["Items"]
        sums = [i for i in items if i["pk"]["S"].endswith("/SumSomeNum/someNum:AggSum")]
        return int(Decimal(sums[0]["f:value"]["N"])) if sums else None

    def tee_objects(self) -> list[str]:
        return [o["Key"] for o in self.s3.list_objects_v2(Bucket=BUCKET).get("Contents", [])]

    def tee_messages(self) -> int:
        attrs = self.sqs.get_queue_attributes(QueueUrl=self.queue_url, AttributeNames=["ApproximateNumberOfMessages"])
        return int(attrs["Attributes"]["ApproximateNumberOfMessages"])

    def invoke(self, *args: str, env_vars: bool = True, cwd: pathlib.Path = ROOT) -> subprocess.CompletedProcess:
        # Hermetic: nothing from the developer's shell that the template declares (the shell would win).
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AGGLO_", "POWERTOOLS_", "AWS_"))}
        env.update(FAKE_AWS, AWS_ENDPOINT_URL=self.url)
        argv = [sys.executable, "-m", "handlers.local", "invoke", *args, "-t", str(TEMPLATE)]
        if env_vars:
            argv += ["--env-vars", str(self.env_json)]
        return subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=60)


@pytest.fixture
def stack(moto_endpoint, tmp_path):
    import boto3

    urllib.request.urlopen(urllib.request.Request(f"{moto_endpoint}/moto-api/reset", method="POST"), timeout=10)
    session = boto3.session.Session(aws_access_key_id="testing", aws_secret_access_key="testing",
                                    region_name="us-east-1")
    dynamodb, s3, sqs = (session.client(s, endpoint_url=moto_endpoint) for s in ("dynamodb", "s3", "sqs"))
    dynamodb.create_table(TableName=TABLE, BillingMode="PAY_PER_REQUEST",
                          AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
                          KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}])
    s3.create_bucket(Bucket=BUCKET)
    queue_url = sqs.create_queue(QueueName=QUEUE)["QueueUrl"]
    env_json = tmp_path / "env.json"
    env_json.write_text(json.dumps({"PipelineFunction": {
        "AGGLO_STATE_TABLE": TABLE, "AGGLO_OUTPUT_BUCKET": BUCKET, "AGGLO_OUTPUT_QUEUE_URL": queue_url}}))
    return Stack(moto_endpoint, env_json, dynamodb, s3, sqs, queue_url)


def _response(proc: subprocess.CompletedProcess, status: int = 0) -> Any:
    assert proc.returncode == status, f"exit {proc.returncode}\nstdout: {proc.stdout}\nstderr: {proc.stderr}"
    return json.loads(proc.stdout)  # stdout is the response and nothing else


def test_sqs_batch_with_an_sns_wrapped_message(stack):
    response = _response(stack.invoke("PipelineFunction", "-e", str(EVENTS / "sqs.json")))
    assert response == {"batchItemFailures": []}
    assert stack.aggregate() == 254 + 326  # the third message's sum came out of its SNS envelope
    assert len(stack.tee_objects()) == 3 and all(k.startswith("before/") for k in stack.tee_objects())
    assert stack.tee_messages() == 3


def test_http_api_request(stack):
    response = _response(stack.invoke("PipelineFunction", "-e", str(EVENTS / "apigw-http.json")))
    assert response["statusCode"] == 200
    [output] = json.loads(response["body"])["outputs"]
    assert output["foobar"] == "found"
    assert output["internal:aggregation:BasicPipeline"] == {"someNum:AggSum": {"value": 991}}
    assert stack.aggregate() == 991


def test_s3_object_created_runs_every_line_of_the_object(stack):
    stack.s3.create_bucket(Bucket=INPUT_BUCKET)
    stack.s3.upload_file(str(EVENTS / "basic.jsonl"), INPUT_BUCKET, "events/basic.jsonl")
    lines = len((EVENTS / "basic.jsonl").read_text().splitlines())

    response = _response(stack.invoke("PipelineFunction", "-e", str(EVENTS / "s3-put.json")))
    assert response == {"records": lines, "failed": 0, "deadLettered": 0}
    assert stack.aggregate() == _sum_of_some_num(EVENTS / "basic.jsonl")
    assert len(stack.tee_objects()) == lines
    assert stack.tee_messages() == lines


@pytest.mark.parametrize(("event", "records", "total"), [("kinesis.json", 3, 829 + 450),
                                                        ("dynamodb-stream.json", 3, 780)])
def test_stream_batches(stack, event, records, total):
    response = _response(stack.invoke("PipelineFunction", "-e", str(EVENTS / event)))
    assert response == {"batchItemFailures": []}
    assert stack.aggregate() == total
    assert len(stack.tee_objects()) == records


def test_a_handler_error_is_printed_as_lambda_reports_it_and_exits_1(stack):
    # The bucket named in the event does not exist: the invocation itself fails.
    proc = stack.invoke("PipelineFunction", "-e", str(EVENTS / "s3-put.json"))
    response = _response(proc, status=1)
    assert set(response) == {"errorMessage", "errorType", "requestId", "stackTrace"}
    assert response["errorType"] == "FileNotFoundError"
    assert "s3://agglo-input-example/events/basic.jsonl: no such object" in response["errorMessage"]
    assert "aws_lambda.py" in response["stackTrace"][0]  # from the handler down, as Lambda shows it
    assert "Traceback" in proc.stderr


def test_unresolved_resource_references_are_named_and_records_fail(stack):
    proc = stack.invoke("PipelineFunction", "-e", str(EVENTS / "sqs.json"), env_vars=False)
    response = _response(proc)
    assert len(response["batchItemFailures"]) == 3  # the table "StateTable" etc. do not exist
    for name, ref in (("AGGLO_STATE_TABLE", "StateTable"), ("AGGLO_OUTPUT_BUCKET", "OutputBucket"),
                      ("AGGLO_OUTPUT_QUEUE_URL", "OutputQueue")):
        assert f"{name}: !Ref {ref} has no value outside CloudFormation" in proc.stderr


def test_parameter_overrides_reach_the_function(stack, tmp_path):
    # From another directory: the template's CodeUri, not the working directory, is the package root.
    proc = stack.invoke("PipelineFunction", "-e", str(EVENTS / "sqs.json"),
                        "--parameter-overrides", "ConfigPath=pipelines/missing.json", cwd=tmp_path)
    response = _response(proc, status=1)
    # The config is read in the init phase: the import fails, saying which config and why.
    assert response["errorType"] == "Runtime.ImportModuleError"
    assert "agglo cannot start: AGGLO_CONFIG=pipelines/missing.json: no such file" in response["errorMessage"]
    assert f"{ROOT}/pipelines/missing.json" in response["errorMessage"]

    proc = stack.invoke("PipelineFunction", "-e", str(EVENTS / "sqs.json"), cwd=tmp_path)
    assert _response(proc) == {"batchItemFailures": []}


def test_a_missing_function_is_a_usage_error(stack):
    proc = stack.invoke("NoSuchFunction", "-e", str(EVENTS / "sqs.json"))
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert "'NoSuchFunction' does not exist" in proc.stderr
    assert "PipelineFunction" in proc.stderr  # the functions there are

    proc = stack.invoke("StateTable", "-e", str(EVENTS / "sqs.json"))
    assert proc.returncode == 2 and "'StateTable' is not a function" in proc.stderr


# --- the template reader, in process --------------------------------------------------------------------


def test_the_loader_reads_short_forms_as_samtranslator_does():
    from samtranslator.yaml_helper import yaml_parse

    from handlers.authoring.invoke import load_template

    assert load_template(str(TEMPLATE)) == yaml_parse(TEMPLATE.read_text())


def _template(tmp_path: pathlib.Path, text: str) -> str:
    path = tmp_path / "template.yaml"
    path.write_text(text)
    return str(path)


TEMPLATE_WITH_GLOBALS = """
Transform: AWS::Serverless-2016-10-31
Parameters:
  Stage: {Type: String, Default: dev}
Conditions:
  IsProd: !Equals [!Ref Stage, prod]
Globals:
  Function:
    Timeout: 9
    Environment:
      Variables: {FROM_GLOBALS: g, OVERRIDDEN: global}
Resources:
  Fn:
    Type: AWS::Serverless::Function
    Properties:
      Handler: app.handler
      CodeUri: .
      Environment:
        Variables:
          OVERRIDDEN: function
          STAGE: !Ref Stage
          NAME: !Sub "agglo-${Stage}-${AWS::Region}"
          JOINED: !Join ["-", [a, !Ref Stage]]
          CHOSEN: !If [IsProd, big, small]
          QUEUE: !GetAtt Queue.Arn
          URL: !Sub "${Queue.Arn}/x"
          FLAG: true
          FROM_SHELL: template
  Queue:
    Type: AWS::SQS::Queue
"""


def test_globals_parameters_and_intrinsics(tmp_path):
    from handlers.authoring.invoke import find_function, function_environment, load_template

    path = _template(tmp_path, TEMPLATE_WITH_GLOBALS)
    template = load_template(path)
    fn = find_function(template, "Fn", path)
    assert fn.properties["Timeout"] == 9
    warnings = io.StringIO()
    env = function_environment(fn, template, {"Stage": "prod"}, {"URL": "from-env-json", "EXTRA": "x"},
                               shell={"AWS_REGION": "eu-west-1", "FROM_SHELL": "shell"}, warn=warnings)
    assert env == {"FROM_GLOBALS": "g", "OVERRIDDEN": "function", "STAGE": "prod", "NAME": "agglo-prod-eu-west-1",
                   "JOINED": "a-prod", "CHOSEN": "big", "QUEUE": "Queue.Arn", "URL": "from-env-json",
                   "FLAG": "true", "FROM_SHELL": "shell", "EXTRA": "x"}
    assert "QUEUE: !GetAtt Queue.Arn has no value outside CloudFormation" in warnings.getvalue()
    assert "URL" not in warnings.getvalue()


def test_env_json_and_parameter_override_forms(tmp_path):
    from handlers.authoring.invoke import Function, parse_parameter_overrides, read_env_vars

    assert parse_parameter_overrides(["A=1", "B=x=y"]) == {"A": "1", "B": "x=y"}
    assert parse_parameter_overrides(["ParameterKey=A,ParameterValue=1 C='two words'"]) == {"A": "1",
                                                                                            "C": "two words"}
    path = tmp_path / "env.json"
    path.write_text(json.dumps({"Parameters": {"A": "all", "B": "all"}, "Fn": {"B": "fn", "N": 3},
                                "Other": {"A": "other"}}))
    assert read_env_vars(str(path), Function("Fn", {}, "t")) == {"A": "all", "B": "fn", "N": "3"}


APP = '''
import os

def handler(event, context):
    print("this goes to stderr")
    return {"event": event, "x": os.environ["X"], "root": os.environ["LAMBDA_TASK_ROOT"],
            "name": context.function_name, "arn": context.invoked_function_arn,
            "memory": context.memory_limit_in_mb, "remaining": context.get_remaining_time_in_millis()}

def fails(event, context):
    raise ValueError("no good")
'''


@pytest.mark.parametrize(("handler", "status", "error_type"), [
    ("agglo_invoke_app.handler", 0, None), ("agglo_invoke_app.fails", 1, "ValueError"),
    ("agglo_invoke_app.absent", 1, "Runtime.HandlerNotFound"),
    ("agglo_invoke_nowhere.handler", 1, "Runtime.ImportModuleError")])
def test_in_process_invocation(tmp_path, monkeypatch, capfd, handler, status, error_type):
    from handlers.authoring.invoke import invoke

    (tmp_path / "code").mkdir()
    (tmp_path / "code" / "agglo_invoke_app.py").write_text(APP)
    path = _template(tmp_path, f"""
Resources:
  Fn:
    Type: AWS::Serverless::Function
    Properties: {{Handler: {handler}, CodeUri: code/, Runtime: python3.11, Timeout: 7, MemorySize: 256,
                 Environment: {{Variables: {{X: from-template}}}}}}
""")
    event = tmp_path / "event.json"
    event.write_text('{"a": 1}')
    monkeypatch.delenv("X", raising=False)
    out, err = io.StringIO(), io.StringIO()
    assert invoke("Fn", str(event), path, out=out, err=err) == status
    response = json.loads(out.getvalue())
    if error_type:
        assert response["errorType"] == error_type
        return
    assert response["event"] == {"a": 1} and response["x"] == "from-template"
    assert response["root"] == str(tmp_path / "code")
    assert response["name"] == "Fn" and response["arn"].endswith(":function:Fn") and response["memory"] == "256"
    assert 6000 < response["remaining"] <= 7000
    assert "X" not in os.environ  # restored
    captured = capfd.readouterr()
    assert "this goes to stderr" in captured.err and "this goes to stderr" not in captured.out
