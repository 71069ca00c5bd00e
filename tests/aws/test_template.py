"""template.yaml: the SAM transform runs offline and cfn-lint finds no errors, before or after it."""

from __future__ import annotations

import copy
import json
import pathlib
import re

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
TEMPLATE = ROOT / "template.yaml"
REGION = "us-east-1"


class _NoManagedPolicies:
    """The transform asks for managed policy ARNs only for policies named by bare name; the template has none."""

    def __init__(self) -> None:
        self.calls = 0

    def load(self) -> dict[str, str]:
        self.calls += 1
        return {}


@pytest.fixture(scope="module")
def sam_template() -> dict:
    from samtranslator.yaml_helper import yaml_parse

    return yaml_parse(TEMPLATE.read_text())


SNAPSTART = ("false", "true")


def with_snapstart(sam_template: dict, enabled: str) -> dict:
    """The template as deployed with ``EnableSnapStart=enabled``: the parameter can take no other value."""
    template = copy.deepcopy(sam_template)
    template["Parameters"]["EnableSnapStart"].update(Default=enabled, AllowedValues=[enabled])
    return template


@pytest.fixture(scope="module", params=SNAPSTART, ids=lambda v: f"snapstart-{v}")
def snapstart(request) -> str:
    return request.param


@pytest.fixture(scope="module")
def transformed(sam_template, snapstart) -> dict:
    from samtranslator.translator.transform import transform

    template = with_snapstart(sam_template, snapstart)
    # What `sam package` does before deploying: local code becomes an S3 location.
    template["Resources"]["PipelineFunction"]["Properties"]["CodeUri"] = "s3://agglo-artifacts/pipeline.zip"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("AWS_DEFAULT_REGION", REGION)  # pseudo parameters; no AWS call is made
        loader = _NoManagedPolicies()
        out = transform(template, {"EnableSnapStart": snapstart}, loader)
    assert loader.calls == 0
    return out


def _lint(text: str) -> tuple[list, list]:
    from cfnlint.api import lint
    from cfnlint.config import ManualArgs

    matches = lint(text, config=ManualArgs(regions=[REGION]))
    errors = [m for m in matches if m.rule.id.startswith("E")]
    others = [m for m in matches if not m.rule.id.startswith("E")]
    return errors, others


def _describe(matches: list) -> str:
    return "\n".join(f"{m.rule.id} {'/'.join(str(p) for p in m.path)}: {m.message}" for m in matches)


def test_cfn_lint_finds_no_errors_in_the_sam_template(sam_template, snapstart):
    errors, warnings = _lint(json.dumps(with_snapstart(sam_template, snapstart)))
    assert not errors, f"errors:\n{_describe(errors)}\nwarnings:\n{_describe(warnings)}"


def test_cfn_lint_finds_no_errors_in_the_transformed_template(transformed):
    assert "Transform" not in transformed
    errors, warnings = _lint(json.dumps(transformed))
    assert not errors, f"errors:\n{_describe(errors)}\nwarnings:\n{_describe(warnings)}"


def _resources_of_type(template: dict, rtype: str) -> dict[str, dict]:
    return {k: v for k, v in template["Resources"].items() if v["Type"] == rtype}


def test_the_function(transformed, sam_template):
    fn = transformed["Resources"]["PipelineFunction"]
    props = fn["Properties"]
    assert fn["Type"] == "AWS::Lambda::Function"
    assert props["Handler"] == "handlers.aws_lambda.handler"
    # The bytecode in the artefact is for the Makefile's LAMBDA_PYTHON: the runtime must be that version.
    [lambda_python] = re.findall(r"^LAMBDA_PYTHON\s*\?=\s*(\S+)", (ROOT / "Makefile").read_text(), re.M)
    assert props["Runtime"] == f"python{lambda_python}"
    assert tuple(int(n) for n in lambda_python.split(".")) >= (3, 12)
    assert props["Architectures"] == ["arm64"]
    assert props["TracingConfig"] == {"Mode": "Active"}
    assert props["Timeout"] >= 30 and props["MemorySize"] >= 512
    assert sam_template["Resources"]["PipelineFunction"]["Metadata"] == {"BuildMethod": "makefile"}
    env = props["Environment"]["Variables"]
    assert env["AGGLO_CONFIG"] == {"Ref": "ConfigPath"}
    assert env["AGGLO_STATE_TABLE"] == {"Ref": "StateTable"}
    assert env["AGGLO_OUTPUT_BUCKET"] == {"Ref": "OutputBucket"}
    assert env["AGGLO_OUTPUT_QUEUE_URL"] == {"Ref": "OutputQueue"}
    assert {"AGGLO_DEAD_LETTER", "AGGLO_ALLOW_EXEC", "POWERTOOLS_SERVICE_NAME", "POWERTOOLS_METRICS_NAMESPACE",
            "POWERTOOLS_LOG_LEVEL"} <= set(env)
    assert sam_template["Parameters"]["ConfigPath"]["Default"] == "pipelines/aws-basic.json"
    assert (ROOT / sam_template["Parameters"]["ConfigPath"]["Default"]).is_file()
    url = transformed["Resources"]["PipelineFunctionUrl"]
    assert url["Properties"]["AuthType"] == "AWS_IAM"


def test_the_event_source_mappings(transformed):
    mappings = _resources_of_type(transformed, "AWS::Lambda::EventSourceMapping")
    by_source = {m["Properties"]["EventSourceArn"]["Fn::GetAtt"][0]: m["Properties"] for m in mappings.values()}
    assert set(by_source) == {"InputQueue", "InputStream"}

    sqs = by_source["InputQueue"]
    assert sqs["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert sqs["BatchSize"] == {"Ref": "BatchSize"}
    assert "MaximumBatchingWindowInSeconds" in sqs

    kinesis = by_source["InputStream"]
    assert kinesis["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert kinesis["StartingPosition"] == "TRIM_HORIZON"
    assert kinesis["BisectBatchOnFunctionError"] is True
    assert "MaximumRetryAttempts" in kinesis
    assert kinesis["DestinationConfig"]["OnFailure"]["Destination"] == {"Fn::GetAtt": ["FailedEventsQueue", "Arn"]}


def test_a_poison_stream_record_holds_its_shard_for_bounded_retries_only(transformed, sam_template):
    """The function is told the stream mapping has a failure destination; the retries cannot be unbounded."""
    env = transformed["Resources"]["PipelineFunction"]["Properties"]["Environment"]["Variables"]
    assert env["AGGLO_STREAM_ON_FAILURE"] == "true"
    retries = sam_template["Parameters"]["KinesisMaximumRetryAttempts"]
    assert retries["MinValue"] >= 0 and retries["Default"] <= 10  # -1 would retry until the record expires


def test_s3_notifications_without_a_dependency_cycle(transformed):
    bucket = transformed["Resources"]["InputBucket"]
    [config] = bucket["Properties"]["NotificationConfiguration"]["LambdaConfigurations"]
    assert config["Event"] == "s3:ObjectCreated:*"
    assert config["Function"] == {"Ref": "PipelineFunctionAliaslive"}
    # The function's role must not refer to the bucket (bucket -> permission -> function -> role -> bucket).
    role = json.dumps(transformed["Resources"]["PipelineFunctionRole"])
    assert '"InputBucket"' not in role and "InputBucket." not in role
    # ...but it can read the bucket: both build the same name.
    name = json.dumps(bucket["Properties"]["BucketName"]["Fn::Sub"])
    assert "agglo-input-${AWS::AccountId}-${AWS::Region}-${StackSuffix}" in name
    assert "agglo-input-${AWS::AccountId}-${AWS::Region}-${StackSuffix}/*" in role


def test_asynchronous_failures_go_to_the_failed_events_queue(transformed):
    [config] = _resources_of_type(transformed, "AWS::Lambda::EventInvokeConfig").values()
    props = config["Properties"]
    assert props["DestinationConfig"]["OnFailure"]["Destination"] == {"Fn::GetAtt": ["FailedEventsQueue", "Arn"]}
    assert props["MaximumRetryAttempts"] == 2


def test_the_queues(transformed):
    queues = transformed["Resources"]
    redrive = queues["InputQueue"]["Properties"]["RedrivePolicy"]
    assert redrive["deadLetterTargetArn"] == {"Fn::GetAtt": ["InputDeadLetterQueue", "Arn"]}
    timeout = transformed["Resources"]["PipelineFunction"]["Properties"]["Timeout"]
    assert queues["InputQueue"]["Properties"]["VisibilityTimeout"] >= 6 * timeout
    for name in ("InputQueue", "InputDeadLetterQueue", "FailedEventsQueue", "OutputQueue"):
        assert queues[name]["Type"] == "AWS::SQS::Queue"


def test_the_state_table(transformed):
    props = transformed["Resources"]["StateTable"]["Properties"]
    assert props["BillingMode"] == "PAY_PER_REQUEST"
    assert props["KeySchema"] == [{"AttributeName": "pk", "KeyType": "HASH"}]
    assert props["AttributeDefinitions"] == [{"AttributeName": "pk", "AttributeType": "S"}]
    assert props["TimeToLiveSpecification"] == {"AttributeName": "ttl", "Enabled": True}


def _statements(role: dict) -> list[dict]:
    return [s for p in role["Properties"]["Policies"] for s in p["PolicyDocument"]["Statement"]]


def _actions(statement: dict) -> set[str]:
    actions = statement["Action"]
    return {actions} if isinstance(actions, str) else set(actions)


def test_policies_are_scoped_to_the_stack(transformed):
    role = transformed["Resources"]["PipelineFunctionRole"]
    statements = _statements(role)
    for s in statements:
        assert s["Resource"] != "*", s
        assert not any(a.endswith(":*") or a == "*" for a in _actions(s)), s

    def granted(action: str, resource: str) -> bool:
        return any(any(a == action or (a.endswith("*") and action.startswith(a[:-1])) for a in _actions(s))
                   and resource in json.dumps(s["Resource"]) for s in statements)

    assert granted("dynamodb:UpdateItem", "StateTable")
    assert granted("dynamodb:GetItem", "StateTable")
    assert granted("s3:PutObject", "OutputBucket")
    assert granted("s3:GetObject", "agglo-input-")
    assert granted("sqs:SendMessage", "OutputQueue")
    assert granted("sqs:SendMessage", "FailedEventsQueue")
    assert not granted("s3:PutObject", "agglo-input-")
    # SAM's own policies for the pull event sources and tracing.
    managed = json.dumps(role["Properties"]["ManagedPolicyArns"])
    assert "AWSLambdaSQSQueueExecutionRole" in managed and "AWSLambdaKinesisExecutionRole" in managed
    assert "AWSXrayWriteOnlyAccess" in managed


def test_outputs(sam_template):
    outputs = sam_template["Outputs"]
    for name in ("PipelineFunctionArn", "PipelineFunctionUrl", "StateTableName", "InputBucketName",
                 "OutputBucketName", "InputQueueUrl", "OutputQueueUrl", "InputDeadLetterQueueUrl",
                 "FailedEventsQueueUrl", "InputStreamName"):
        assert name in outputs


def _resolved(node: object, template: dict, parameters: dict[str, str]) -> object:
    """``node`` with its ``Fn::If``s decided as CloudFormation would for ``parameters``."""
    if isinstance(node, list):
        return [_resolved(n, template, parameters) for n in node]
    if not isinstance(node, dict):
        return node
    if set(node) == {"Fn::If"}:
        condition, then, otherwise = node["Fn::If"]
        [(function, (left, right))] = template["Conditions"][condition].items()
        assert function == "Fn::Equals" and set(left) == {"Ref"}, "only parameter equality is decided here"
        return _resolved(then if parameters[left["Ref"]] == right else otherwise, template, parameters)
    return {k: _resolved(v, template, parameters) for k, v in node.items()}


def test_snapstart_is_a_parameter_off_by_default(transformed, sam_template, snapstart):
    assert sam_template["Parameters"]["EnableSnapStart"]["Default"] == "false"
    props = _resolved(transformed["Resources"]["PipelineFunction"]["Properties"], transformed,
                      {"EnableSnapStart": snapstart})
    assert props["SnapStart"] == {"ApplyOn": "PublishedVersions" if snapstart == "true" else "None"}


def test_every_trigger_invokes_the_published_alias(transformed):
    """SnapStart runs only published versions: nothing may invoke $LATEST, whatever EnableSnapStart says."""
    resources = transformed["Resources"]
    [alias_name] = _resources_of_type(transformed, "AWS::Lambda::Alias")
    alias = {"Ref": alias_name}
    assert resources[alias_name]["Properties"]["FunctionVersion"]["Fn::GetAtt"][1] == "Version"
    for mapping in _resources_of_type(transformed, "AWS::Lambda::EventSourceMapping").values():
        assert mapping["Properties"]["FunctionName"] == alias
    [notification] = resources["InputBucket"]["Properties"]["NotificationConfiguration"]["LambdaConfigurations"]
    assert notification["Function"] == alias
    assert resources["PipelineFunctionUrl"]["Properties"]["TargetFunctionArn"] == alias
    for permission in _resources_of_type(transformed, "AWS::Lambda::Permission").values():
        assert permission["Properties"]["FunctionName"] == alias
    [invoke_config] = _resources_of_type(transformed, "AWS::Lambda::EventInvokeConfig").values()
    assert invoke_config["Properties"]["Qualifier"] == "live"
