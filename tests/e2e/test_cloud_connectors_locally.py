"""The AWS example config on this machine, against moto: ``agglo run`` backfilling a Lambda's DynamoDB state,
and the durable daemon teeing to S3. The commands and their environment are the README's ("The same config
against the cloud"), run as written; moto stands for AWS through the SDK's own ``AWS_ENDPOINT_URL``."""

from __future__ import annotations

import json
import pathlib
import signal
import subprocess
from types import SimpleNamespace
from typing import Any

import pytest
from _servers import AGGLO_SCRIPT, Server, json_lines, post_json, run_agglo
from cloud_examples import (
    AFTER_TEE,
    BEFORE_TEE,
    HEADING,
    SOURCE,
    SUM_KEY,
    check_run,
    copy_examples,
    dynamo_items,
)
from readme_commands import agglo_commands, block_running, exported, words
from test_durable import wait_drained

from handlers.connectors.aws import client

REGION = "us-east-1"


def sdk(service: str) -> Any:
    return client(service, REGION)


def create_table(name: str) -> None:
    sdk("dynamodb").create_table(TableName=name, KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
                                 AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
                                 BillingMode="PAY_PER_REQUEST")


@pytest.fixture
def stack(aws, monkeypatch, tmp_path):
    """moto's table, bucket and queue under the README's names, its environment, and a directory holding the
    example pipelines and events. The region is AWS_REGION alone, as Lambda sets it (boto3 reads another)."""
    env = exported(block_running(HEADING, "agglo run -c pipelines/aws-basic.json"))
    create_table(env["AGGLO_STATE_TABLE"])
    sdk("s3").create_bucket(Bucket=env["AGGLO_OUTPUT_BUCKET"])
    sdk("sqs").create_queue(QueueName=env["AGGLO_OUTPUT_QUEUE_URL"].rsplit("/", 1)[1])
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("AWS_DEFAULT_REGION")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))  # no profile's region either
    copy_examples(tmp_path)
    return SimpleNamespace(env=env, dir=tmp_path, table=env["AGGLO_STATE_TABLE"], bucket=env["AGGLO_OUTPUT_BUCKET"],
                           queue=env["AGGLO_OUTPUT_QUEUE_URL"])


def objects(bucket: str, prefix: str = "before/") -> dict[str, dict]:
    s3 = sdk("s3")
    listing = s3.list_objects_v2(Bucket=bucket, Prefix=prefix).get("Contents", [])
    return {o["Key"]: json.loads(s3.get_object(Bucket=bucket, Key=o["Key"])["Body"].read()) for o in listing}


def messages(queue_url: str) -> list[dict]:
    """Every message waiting on the queue (received and deleted), as (agglo-id, body)."""
    sqs, seen = sdk("sqs"), []
    while batch := sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10, MessageAttributeNames=["All"],
                                       WaitTimeSeconds=0).get("Messages", []):
        seen.extend(batch)
        sqs.delete_message_batch(QueueUrl=queue_url, Entries=[
            {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(batch)])
    return [{"id": m["MessageAttributes"]["agglo-id"]["StringValue"], "body": json.loads(m["Body"])} for m in seen]


def test_agglo_run_backfills_dynamodb_state_and_tees_as_the_lambda_would(stack):
    [run] = agglo_commands(block_running(HEADING, "agglo run -c pipelines/aws-basic.json"))
    proc = run_agglo(run, stack.dir, command=AGGLO_SCRIPT)
    assert proc.returncode == 0, proc.stderr.decode()
    assert proc.stderr == b""
    events = json_lines((stack.dir / "events" / "basic.jsonl").read_bytes())
    outputs = json_lines((stack.dir / "outputs.jsonl").read_bytes())
    tees = [o["internal:tee:output"] for o in outputs]
    total = check_run(events, outputs, objects(stack.bucket), messages(stack.queue))

    state = dynamo_items(stack.table)
    assert state[SUM_KEY]["f:value"] == total
    marks = {k for k in state if k.startswith("mark/")}
    assert len(marks) == sum("someNum" in e for e in events)  # --dedupe: one mark per record that changed state

    # The same file again: the same outputs, no state change counted twice, the same objects, the same ids sent.
    first_outputs = (stack.dir / "outputs.jsonl").read_bytes()
    first_objects = objects(stack.bucket)
    again = run_agglo(run, stack.dir, command=AGGLO_SCRIPT)
    assert again.returncode == 0, again.stderr.decode()
    assert (stack.dir / "outputs.jsonl").read_bytes() == first_outputs
    assert dynamo_items(stack.table) == state
    assert objects(stack.bucket) == first_objects
    assert sorted(m["id"] for m in messages(stack.queue)) == sorted(tee[1]["uuid"] for tee in tees)

    # The plan now comes from the cache, with ${AGGLO_STATE_TABLE} unexpanded: another table is another table.
    create_table("agglo-state-copy")
    copy = run_agglo(run, stack.dir, command=AGGLO_SCRIPT, env={"AGGLO_STATE_TABLE": "agglo-state-copy"})
    assert copy.returncode == 0, copy.stderr.decode()
    assert dynamo_items("agglo-state-copy")[SUM_KEY]["f:value"] == total
    assert dynamo_items(stack.table) == state


def test_without_a_region_agglo_run_does_not_start(stack, monkeypatch):
    monkeypatch.delenv("AWS_REGION")
    [run] = agglo_commands(block_running(HEADING, "agglo run -c pipelines/aws-basic.json"))
    proc = run_agglo(run, stack.dir, command=AGGLO_SCRIPT)
    assert proc.returncode == 2
    lines = proc.stderr.decode().splitlines()
    assert lines[0].startswith("agglo: pipelines/aws-basic.json: ")
    assert len(lines) == 3 and all("no AWS region is set: set AWS_REGION" in line for line in lines), lines
    named = (f"DynamoDB table {stack.table}", f"S3 bucket {stack.bucket}", f"SQS queue {stack.queue}")
    assert all(any(what in line for line in lines) for what in named), lines
    assert not (stack.dir / "outputs.jsonl").exists()
    assert dynamo_items(stack.table) == {} and objects(stack.bucket) == {} and messages(stack.queue) == []


def test_the_durable_daemon_tees_each_accepted_event_to_s3_once(stack):
    block = block_running(HEADING, "agglo serve -c pipelines/aws-basic.json")
    [serve] = agglo_commands(block)
    assert serve[:2] == ["serve", "-c"]
    server = Server(pathlib.Path(serve[2]), stack.dir, *serve[3:], log_name="durable-s3").start()
    try:
        # The README's request, to this daemon's port.
        [curl] = [words(line) for line in block if line.startswith("curl ")]
        url = next(w for w in curl if w.startswith("localhost:8080/"))
        curl[curl.index(url)] = url.replace("localhost:8080", f"127.0.0.1:{server.port}")
        answer = subprocess.run(curl, capture_output=True, check=True, timeout=30)
        assert json.loads(answer.stdout) == {"queued": 1}
        readme_key = next(w.split(": ", 1)[1] for w in curl if w.startswith("Idempotency-Key: "))
        readme_event = json.loads(curl[curl.index("-d") + 1])

        events = {f"event-{n}": {"someNum": n, "someDict": {"someFixed": "foobar"}} for n in range(1, 31)}
        queued = {}
        for key, event in events.items():
            status, body = post_json(server.port, event, headers={"Idempotency-Key": key})
            assert status == 202, body
            queued[key] = body["queued"]
        wait_drained(server.port, 60)
        events[readme_key] = readme_event
        total = sum(e["someNum"] for e in events.values())
        expected_objects = {f"before/{BEFORE_TEE(f'http:{key}')}": {**e, **SOURCE} for key, e in events.items()}
        expected_ids = sorted(AFTER_TEE(f"http:{key}") for key in events)
        assert objects(stack.bucket) == expected_objects
        assert sorted(m["id"] for m in messages(stack.queue)) == expected_ids
        assert dynamo_items(stack.table)[SUM_KEY]["f:value"] == total

        # A client's retries, before and after the daemon is killed and started again on its queue: each is
        # answered with its first queue id, and nothing is written twice.
        for restart in (False, True):
            if restart:
                server.kill(signal.SIGKILL)
                server.start()
            for key, event in events.items():
                if key == readme_key:
                    continue
                assert post_json(server.port, event, headers={"Idempotency-Key": key}) == (202, {"queued": queued[key]})
            wait_drained(server.port, 60)
            assert objects(stack.bucket) == expected_objects
            assert messages(stack.queue) == []
            assert dynamo_items(stack.table)[SUM_KEY]["f:value"] == total
    finally:
        server.stop()
