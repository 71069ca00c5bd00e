"""Workload 3: a Lambda cold start, agglo against a minimal Powertools handler, on moto.

Each side is a fresh Python process that imports its handler, initialises and
handles one SQS record, as a cold Lambda sandbox does; the wall time from spawn
to exit is compared. agglo runs ``pipelines/aws-basic.json`` (binge's basic
pipeline with an S3 tee, an SQS tee and DynamoDB state, deduplicated); the
baseline is a Powertools ``BatchProcessor`` handler that creates a boto3
DynamoDB client and does one ``UpdateItem``.
"""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys
import tempfile
import time

from benchmarks._aws import ROOT, basic_config, create_state_table, moto_server

AGGLO = """
import json, sys
from handlers.aws_lambda import handler
answer = handler(json.load(open(sys.argv[1])), None)
assert answer == {"batchItemFailures": []}, answer
"""

BASELINE = """
import json, sys
import boto3
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response

processor = BatchProcessor(event_type=EventType.SQS)
dynamodb = boto3.client("dynamodb")

def record_handler(record):
    event = json.loads(record.body)
    dynamodb.update_item(TableName="state", Key={"pk": {"S": "sum"}}, UpdateExpression="ADD #v :n",
                         ExpressionAttributeNames={"#v": "value"},
                         ExpressionAttributeValues={":n": {"N": str(event["someNum"])}})

def handler(event, context):
    return process_partial_response(event=event, record_handler=record_handler, processor=processor,
                                    context=context)

answer = handler(json.load(open(sys.argv[1])), None)
assert answer == {"batchItemFailures": []}, answer
"""


def _sqs_event(message_id: str) -> dict:
    body = {"someNum": 254, "someDict": {"someFixed": "foobar"}, "someString": "bcd6b1bc88c2c8bd"}
    return {"Records": [{"messageId": message_id, "receiptHandle": "h", "body": json.dumps(body),
                         "attributes": {"ApproximateReceiveCount": "1"}, "messageAttributes": {},
                         "eventSource": "aws:sqs", "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:in",
                         "awsRegion": "us-east-1"}]}


def _spawn(script: str, event_file: pathlib.Path, env: dict[str, str]) -> tuple[float, float]:
    """Wall and CPU seconds of one fresh process, spawn to exit."""
    started = time.perf_counter()
    child = subprocess.Popen([sys.executable, "-c", script, str(event_file)], env=env, cwd=ROOT,
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    assert child.stderr is not None
    errors = child.stderr.read()
    _, status, usage = os.wait4(child.pid, 0)
    elapsed = time.perf_counter() - started
    child.returncode = os.waitstatus_to_exitcode(status)
    if child.returncode != 0:
        raise RuntimeError(f"cold start failed: {errors.decode()[-2000:]}")
    return elapsed, usage.ru_utime + usage.ru_stime


def measure(runs: int) -> dict[str, dict[str, float]]:
    """Median wall and CPU seconds, spawn to exit, for each side; runs alternate."""
    import boto3

    with moto_server() as aws, tempfile.TemporaryDirectory() as tmp_name:
        tmp = pathlib.Path(tmp_name)
        dynamodb = boto3.client("dynamodb")
        create_state_table(dynamodb)
        boto3.client("s3").create_bucket(Bucket="outputs")
        queue = boto3.client("sqs").create_queue(QueueName="outputs")["QueueUrl"]
        env = {**os.environ, **aws, "PYTHONPATH": str(ROOT), "AGGLO_STATE_TABLE": "state",
               "AGGLO_OUTPUT_BUCKET": "outputs", "AGGLO_OUTPUT_QUEUE_URL": queue,
               "POWERTOOLS_SERVICE_NAME": "bench", "POWERTOOLS_METRICS_NAMESPACE": "bench",
               "AWS_LAMBDA_FUNCTION_NAME": "bench"}
        sides = {
            "Powertools + boto3": (BASELINE, env),
            "agglo, basic.json on DynamoDB": (
                AGGLO, {**env, "AGGLO_CONFIG": str(basic_config(tmp, "dynamo:tableName=state"))}),
            "agglo, aws-basic.json (S3, SQS, DynamoDB)": (
                AGGLO, {**env, "AGGLO_CONFIG": str(ROOT / "pipelines/aws-basic.json")}),
        }
        times: dict[str, list[tuple[float, float]]] = {name: [] for name in sides}
        for i in range(runs):
            event = tmp / f"event-{i}.json"
            event.write_text(json.dumps(_sqs_event(f"cold-{i}")))
            for name, (script, side_env) in sides.items():
                times[name].append(_spawn(script, event, side_env))
        items = dynamodb.scan(TableName="state")["Items"]
        assert any(i["pk"]["S"] == "sum" and int(i["value"]["N"]) == 254 * runs for i in items), items
    return {name: {"wall": sorted(w for w, _ in ts)[len(ts) // 2], "cpu": sorted(c for _, c in ts)[len(ts) // 2]}
            for name, ts in times.items()}
