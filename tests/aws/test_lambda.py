"""The Lambda handler end to end against moto over HTTP: every trigger, every AWS connector."""

from __future__ import annotations

import base64
import contextlib
import gzip
import json
import logging
import pathlib
import socket
import sys
import uuid
from types import SimpleNamespace
from urllib.parse import quote_plus

import pytest
from builders import PARTITION, config, exists, external

from agglo_core.effects import Put
from agglo_core.ids import IdMaker
from handlers import aws_lambda
from handlers.connectors.aws import client

REPO = pathlib.Path(__file__).resolve().parents[2]
BASIC = "pipelines/aws-basic.json"


def context() -> SimpleNamespace:
    return SimpleNamespace(aws_request_id=str(uuid.uuid4()), function_name="agglo", memory_limit_in_mb=512,
                           invoked_function_arn="arn:aws:lambda:us-east-1:123456789012:function:agglo",
                           get_remaining_time_in_millis=lambda: 30_000)


@pytest.fixture
def stack(aws, monkeypatch, tmp_path):
    """What template.yaml declares, in moto: a state table, buckets, queues, a stream."""
    ddb, s3, sqs, kinesis = client("dynamodb"), client("s3"), client("sqs"), client("kinesis")
    ddb.create_table(TableName="state", KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
                     AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
                     BillingMode="PAY_PER_REQUEST")
    for bucket in ("input", "tees"):
        s3.create_bucket(Bucket=bucket)
    queue = sqs.create_queue(QueueName="out")["QueueUrl"]
    kinesis.create_stream(StreamName="out-stream", ShardCount=1)
    env = {"AGGLO_STATE_TABLE": "state", "AGGLO_OUTPUT_BUCKET": "tees", "AGGLO_OUTPUT_QUEUE_URL": queue}
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    monkeypatch.setenv("AGGLO_CONFIG", str(REPO / BASIC))

    def use(cfg: dict) -> None:
        path = tmp_path / f"config-{uuid.uuid4().hex}.json"
        path.write_text(json.dumps(cfg))
        monkeypatch.setenv("AGGLO_CONFIG", str(path))
        aws_lambda.reset()

    return SimpleNamespace(queue=queue, use=use, tmp=tmp_path)


def total(key_suffix: str = "SumSomeNum/someNum:AggSum") -> float | None:
    item = client("dynamodb").get_item(TableName="state", Key={"pk": {"S": (
        f"agg/c5024ca8-d601-499f-bb24-daae74357b5e/BasicPipeline/{key_suffix}")}}).get("Item")
    return None if item is None else float(item["f:value"]["N"])


def tee_objects(prefix: str = "before/") -> dict[str, dict]:
    s3 = client("s3")
    listing = s3.list_objects_v2(Bucket="tees", Prefix=prefix).get("Contents", [])
    return {o["Key"]: json.loads(s3.get_object(Bucket="tees", Key=o["Key"])["Body"].read()) for o in listing}


def queue_messages(url: str) -> list[dict]:
    sqs, seen = client("sqs"), []
    while batch := sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, MessageAttributeNames=["All"],
                                       WaitTimeSeconds=0).get("Messages", []):
        seen.extend(batch)
        sqs.delete_message_batch(QueueUrl=url, Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]}
                                                        for i, m in enumerate(batch)])
    return seen


def sqs_event(bodies: list[str], fifo_groups: list[str] | None = None) -> dict:
    arn = "arn:aws:sqs:us-east-1:123456789012:input" + (".fifo" if fifo_groups else "")
    return {"Records": [{
        "messageId": f"m-{i}", "receiptHandle": f"rh-{i}", "body": body, "md5OfBody": "x",
        "attributes": {"ApproximateReceiveCount": "1", "SentTimestamp": "1", "SenderId": "x",
                       "ApproximateFirstReceiveTimestamp": "1",
                       **({"MessageGroupId": fifo_groups[i], "SequenceNumber": str(i)} if fifo_groups else {})},
        "messageAttributes": {}, "eventSource": "aws:sqs", "eventSourceARN": arn, "awsRegion": "us-east-1"}
        for i, body in enumerate(bodies)]}


def event(n: int, **extra) -> dict:
    return {"someNum": n, "someDict": {"someFixed": "foobar"}, **extra}


def test_sqs_batch_reports_exactly_the_poison_messages(stack):
    bodies = [json.dumps(event(1)), "{not json", json.dumps(event(2, foobar="taken")), json.dumps(event(4)),
              json.dumps({"someVocab": "buzz/x"})]
    response = aws_lambda.handler(sqs_event(bodies), context())
    assert response == {"batchItemFailures": [{"itemIdentifier": "m-1"}, {"itemIdentifier": "m-2"}]}
    assert total() == 1 + 4
    # BeforeTee ran for every parsable message (before the annotator failed m-2); AfterTee only for good ones
    assert len(tee_objects()) == 4
    messages = queue_messages(stack.queue)
    assert sorted(json.loads(m["Body"]).get("someNum", -1) for m in messages) == [-1, 1, 4]
    after_tee = IdMaker("c5024ca8-d601-499f-bb24-daae74357b5e", "BasicPipeline", "AfterTee", "tee")
    assert sorted(m["MessageAttributes"]["agglo-id"]["StringValue"] for m in messages) == sorted(
        after_tee(f"m-{i}") for i in (0, 3, 4))


def test_sqs_bodies_wrapped_by_sns_are_unwrapped(stack):
    wrapped = json.dumps({"Type": "Notification", "MessageId": "sns-1", "TopicArn": "arn:aws:sns:us-east-1:1:t",
                          "Message": json.dumps(event(7))})
    assert aws_lambda.handler(sqs_event([wrapped]), context()) == {"batchItemFailures": []}
    assert total() == 7


def test_fifo_failure_fails_the_rest_of_its_group_without_running_it(stack):
    bodies = [json.dumps(event(1)), json.dumps(event(2, foobar="taken")), json.dumps(event(4)),
              json.dumps(event(8)), json.dumps(event(16))]
    response = aws_lambda.handler(sqs_event(bodies, fifo_groups=["a", "a", "a", "b", "b"]), context())
    assert response == {"batchItemFailures": [{"itemIdentifier": "m-1"}, {"itemIdentifier": "m-2"}]}
    assert total() == 1 + 8 + 16  # m-2 (4) never ran


def kinesis_event(payloads: list[bytes]) -> dict:
    return {"Records": [{
        "kinesis": {"kinesisSchemaVersion": "1.0", "partitionKey": "k", "sequenceNumber": f"4959{i:020d}",
                    "data": base64.b64encode(p).decode(), "approximateArrivalTimestamp": 1.5},
        "eventSource": "aws:kinesis", "eventVersion": "1.0", "eventID": f"shardId-000000000000:4959{i:020d}",
        "eventName": "aws:kinesis:record", "awsRegion": "us-east-1",
        "eventSourceARN": "arn:aws:kinesis:us-east-1:123456789012:stream/in"} for i, p in enumerate(payloads)]}


def test_kinesis_batch_and_outputs_to_kinesis_read_back(stack):
    cfg = config({"tee": {"name": "ToStream", "outputConnectorRef": "Stream"}},
                 {"aggregator": {"name": "Count", "stateStore": "State", "forwardState": True,
                                 "aggregation": {"key": "n", "aggregationType": "AggCount"}}},
                 externals=(external("ExternalPubSub", "Stream", "kinesis:streamName=out-stream"),
                            external("ExternalKVStore", "State", "dynamo:tableName=${AGGLO_STATE_TABLE}")),
                 order=["Count", "ToStream"])
    stack.use(cfg)
    payloads = [json.dumps({"n": i}).encode() for i in range(3)] + [b"\x00garbage"]
    response = aws_lambda.handler(kinesis_event(payloads), context())
    assert response == {"batchItemFailures": []}  # the poison record is logged and the shard moves on
    kinesis = client("kinesis")
    shard = kinesis.describe_stream(StreamName="out-stream")["StreamDescription"]["Shards"][0]["ShardId"]
    iterator = kinesis.get_shard_iterator(StreamName="out-stream", ShardId=shard,
                                          ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
    records = kinesis.get_records(ShardIterator=iterator)["Records"]
    bodies = [json.loads(r["Data"]) for r in records]
    assert [b["n"] for b in bodies] == [0, 1, 2]
    assert [b["internal:aggregation:P"]["n:AggCount"]["value"] for b in bodies] == [1, 2, 3]
    tee_ids = IdMaker(PARTITION, "P", "ToStream", "tee")
    assert [r["PartitionKey"] for r in records] == [tee_ids(f"shardId-000000000000:4959{i:020d}") for i in range(3)]


def test_dynamodb_stream_images_become_plain_json(stack):
    cfg = config({"tee": {"name": "Keep", "outputConnectorRef": "Out"}},
                 externals=(external("ExternalObjectStore", "Out", "s3:bucketName=tees,prefix=ddb/"),))
    stack.use(cfg)
    new = {"id": {"S": "a1"}, "n": {"N": "3.5"}, "tags": {"SS": ["x", "y"]}, "ok": {"BOOL": True},
           "nested": {"M": {"l": {"L": [{"N": "1"}, {"NULL": True}]}}}}
    records = [{"eventID": "e1", "eventName": "MODIFY", "eventSource": "aws:dynamodb", "awsRegion": "us-east-1",
                "dynamodb": {"Keys": {"id": {"S": "a1"}}, "NewImage": new, "OldImage": {"id": {"S": "a1"}},
                             "SequenceNumber": "111", "SizeBytes": 26, "StreamViewType": "NEW_AND_OLD_IMAGES"}},
               {"eventID": "e2", "eventName": "REMOVE", "eventSource": "aws:dynamodb", "awsRegion": "us-east-1",
                "dynamodb": {"Keys": {"id": {"S": "b2"}}, "OldImage": {"id": {"S": "b2"}, "n": {"N": "1"}},
                             "SequenceNumber": "222", "SizeBytes": 10, "StreamViewType": "NEW_AND_OLD_IMAGES"}}]
    assert aws_lambda.handler({"Records": records}, context()) == {"batchItemFailures": []}
    bodies = sorted(tee_objects("ddb/").values(), key=lambda b: b["id"])
    assert {k: v for k, v in bodies[0].items() if not k.startswith("internal:")} == {
        "id": "a1", "n": 3.5, "tags": ["x", "y"], "ok": True, "nested": {"l": [1, None]}}
    assert bodies[0]["internal:dynamodb"] == {"eventName": "MODIFY", "keys": {"id": "a1"},
                                              "oldImage": {"id": "a1"}}
    assert bodies[1]["n"] == 1 and bodies[1]["internal:dynamodb"]["eventName"] == "REMOVE"


def s3_event(bucket: str, *keys: str) -> dict:
    return {"Records": [{
        "eventVersion": "2.1", "eventSource": "aws:s3", "awsRegion": "us-east-1", "eventName": "ObjectCreated:Put",
        "s3": {"s3SchemaVersion": "1.0", "bucket": {"name": bucket, "arn": f"arn:aws:s3:::{bucket}"},
               "object": {"key": quote_plus(key), "size": 1, "eTag": "x"}}} for key in keys]}


def test_s3_objects_every_format_streamed_into_state_and_tees(stack, monkeypatch):
    monkeypatch.setattr(aws_lambda, "S3_CHUNK", 40)
    s3 = client("s3")
    lines = [event(i) for i in range(1, 101)]  # several chunks of records
    s3.put_object(Bucket="input", Key="day 1/events.jsonl.gz",
                  Body=gzip.compress("\n".join(json.dumps(e) for e in lines).encode()))
    s3.put_object(Bucket="input", Key="array.json", Body=json.dumps([event(5000), event(6000)]).encode())
    s3.put_object(Bucket="input", Key="one.json", Body=json.dumps(event(70000), indent=2).encode())
    response = aws_lambda.handler(s3_event("input", "day 1/events.jsonl.gz", "array.json", "one.json"), context())
    assert response == {"records": 103, "failed": 0, "deadLettered": 0}
    assert total() == sum(range(1, 101)) + 5000 + 6000 + 70000
    assert len(tee_objects()) == 103


def test_s3_failures_go_to_the_dead_letter_output_or_fail_the_invocation(stack, monkeypatch):
    cfg = json.loads(REPO.joinpath(BASIC).read_text())
    cfg["externalSystems"].append(external("ExternalObjectStore", "DeadLetters", "s3:bucketName=tees,prefix=dlq/"))
    stack.use(cfg)
    client("s3").put_object(Bucket="input", Key="mixed.jsonl",
                            Body=b'{"someNum": 1}\nnot json\n{"someNum": 2, "foobar": "x", "someDict": '
                                 b'{"someFixed": "foobar"}}\n')
    with pytest.raises(aws_lambda.RecordsFailed, match="2 of 3 record"):
        aws_lambda.handler(s3_event("input", "mixed.jsonl"), context())
    monkeypatch.setenv("AGGLO_DEAD_LETTER", "DeadLetters")
    aws_lambda.reset()
    assert aws_lambda.handler(s3_event("input", "mixed.jsonl"), context()) == {
        "records": 3, "failed": 2, "deadLettered": 2}
    letters = sorted(tee_objects("dlq/").values(), key=lambda d: d["record"])
    assert [d["record"] for d in letters] == ["input/mixed.jsonl@null#2", "input/mixed.jsonl@null#3"]
    assert letters[0]["event"] is None and "not valid JSON" in letters[0]["errors"][0]["error"]
    assert letters[1]["event"]["foobar"] == "x" and letters[1]["errors"][0]["process"] == "AnnotateFooBar"


def apigw(body: str | None, base64_body: bool = False, headers: dict | None = None) -> dict:
    return {"version": "2.0", "routeKey": "$default", "rawPath": "/", "rawQueryString": "", "headers": headers or {},
            "requestContext": {"http": {"method": "POST", "path": "/"}, "requestId": "r", "stage": "$default"},
            "body": base64.b64encode(body.encode()).decode() if base64_body and body else body,
            "isBase64Encoded": base64_body}


def test_http_api_and_function_urls(stack):
    ok = aws_lambda.handler(apigw(json.dumps(event(3)), base64_body=True), context())
    assert ok["statusCode"] == 200
    [output] = json.loads(ok["body"])["outputs"]
    assert output["internal:aggregation:BasicPipeline"]["someNum:AggSum"] == {"value": 3}
    assert total() == 3
    # Without a key each request is new data: the same click twice counts twice.
    assert aws_lambda.handler(apigw(json.dumps(event(3))), context())["statusCode"] == 200
    assert total() == 6
    # With one, a repeat is the same record (counted once); the same key with another body is a conflict.
    again = aws_lambda.handler(apigw(json.dumps(event(3)), headers={"Idempotency-Key": "k1"}), context())
    repeat = aws_lambda.handler(apigw(json.dumps(event(3)), headers={"idempotency-key": "k1"}), context())
    tee_ids = [json.loads(r["body"])["outputs"][0]["internal:tee:output"][0]["uuid"] for r in (again, repeat)]
    assert tee_ids[0] == tee_ids[1] and total() == 9
    conflict = aws_lambda.handler(apigw(json.dumps(event(5)), headers={"Idempotency-Key": "k1"}), context())
    assert conflict["statusCode"] == 409 and "k1" in json.loads(conflict["body"])["error"] and total() == 9
    # An array is one record per element, each with its own result; a non-object element fails alone.
    mixed = aws_lambda.handler(apigw(json.dumps([event(10), 2, event(20)]), headers={"Idempotency-Key": "k2"}),
                               context())
    answer = json.loads(mixed["body"])
    assert mixed["statusCode"] == 422 and total() == 39
    assert [r["id"] for r in answer["results"]] == ["http:k2#1", "http:k2#2", "http:k2#3"]
    assert [len(r["errors"]) for r in answer["results"]] == [0, 1, 0]
    bad = aws_lambda.handler(apigw("3"), context())
    assert bad["statusCode"] == 400 and "JSON object" in json.loads(bad["body"])["error"]
    failed = aws_lambda.handler(apigw(json.dumps(event(1, foobar="x"))), context())
    assert failed["statusCode"] == 422
    assert json.loads(failed["body"])["errors"][0]["process"] == "AnnotateFooBar"


def test_direct_invocation_with_one_event_or_a_list(stack):
    one = aws_lambda.handler(event(2), context())
    assert one["errors"] == [] and one["outputs"][0]["someNum"] == 2
    many = aws_lambda.handler([event(3), "nope", event(4, foobar="x")], context())
    assert [o["someNum"] for o in many["outputs"]] == [3]
    assert [(e["pipeline"], e["process"]) for e in many["errors"]] == [(None, None), ("BasicPipeline",
                                                                                      "AnnotateFooBar")]


def test_config_from_an_s3_uri_and_clear_errors_for_bad_events(stack, monkeypatch):
    cfg = config({"continuation": {"name": "OnlyA", "condition": exists("a")}})
    client("s3").put_object(Bucket="input", Key="conf/p.json", Body=json.dumps(cfg).encode())
    monkeypatch.setenv("AGGLO_CONFIG", "s3://input/conf/p.json")
    aws_lambda.reset()
    result = aws_lambda.handler([{"a": 1}, {"b": 2}], context())
    assert [o["a"] for o in result["outputs"]] == [1] and result["errors"] == []
    assert result["outputs"][0]["internal:partitionID"] == PARTITION
    with pytest.raises(ValueError, match="unsupported event source 'aws:ses'"):
        aws_lambda.handler({"Records": [{"eventSource": "aws:ses"}]}, context())


def test_logs_are_json_with_the_record_id_and_metrics_are_emf(stack, capsys):
    cfg = json.loads(REPO.joinpath(BASIC).read_text())
    for p in cfg["pipelines"][0]["processes"]:
        if p["name"] == "SumSomeNum":
            p["instrumentation"] = {"latency": True, "counter": True}
    stack.use(cfg)
    aws_lambda.handler([], context())  # cold start: Powertools' handler binds the stdout of the moment
    for h in logging.getLogger("agglo").handlers:
        h.setStream(sys.stdout)
    capsys.readouterr()
    aws_lambda.handler(sqs_event([json.dumps(event(1)), json.dumps(event(2, foobar="x"))]), context())
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    [error] = [line for line in lines if line.get("message") == "record failed"]
    assert error["correlation_id"] == "m-1" and error["level"] == "ERROR"
    assert error["pipeline"] == "BasicPipeline" and error["agglo_process"] == "AnnotateFooBar"
    metrics = {}
    for line in lines:
        if "_aws" in line:
            [directive] = line["_aws"]["CloudWatchMetrics"]
            [metric] = directive["Metrics"]
            metrics[(metric["Name"], line["pipeline"], line.get("process"))] = line[metric["Name"]]
            assert directive["Namespace"] == "agglo-tests"
    assert metrics[("RecordsProcessed", "BasicPipeline", None)] == [1.0]
    assert metrics[("RecordsFailed", "BasicPipeline", None)] == [1.0]
    assert metrics[("RecordsIn", "BasicPipeline", "SumSomeNum")] == [1.0]
    assert ("Latency", "BasicPipeline", "SumSomeNum") in metrics
    assert ("Latency", "BasicPipeline", "AfterTee") not in metrics


def test_traced_pipelines_send_a_subsegment_per_process_to_xray(stack, monkeypatch):
    from aws_xray_sdk.core import xray_recorder
    from aws_xray_sdk.core.lambda_launcher import LambdaContext

    daemon = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)  # a stand-in X-Ray daemon: UDP on 127.0.0.1
    daemon.bind(("127.0.0.1", 0))
    daemon.settimeout(5)
    address = f"127.0.0.1:{daemon.getsockname()[1]}"
    monkeypatch.setenv("LAMBDA_TASK_ROOT", "/var/task")
    monkeypatch.setenv("_X_AMZN_TRACE_ID", "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;"
                                           "Sampled=1")
    monkeypatch.setenv("AWS_XRAY_DAEMON_ADDRESS", address)
    previous = (xray_recorder.context, xray_recorder.streaming_threshold)
    xray_recorder.configure(context=LambdaContext(), daemon_address=address, streaming_threshold=0)
    try:
        cfg = json.loads(REPO.joinpath(BASIC).read_text())
        cfg["pipelines"][0]["enableTracing"] = True
        stack.use(cfg)
        aws_lambda.handler([event(1)], context())
        names = set()
        with contextlib.suppress(TimeoutError):
            while len(names) < 5:
                header, _, document = daemon.recv(65536).partition(b"\n")
                names.update(json.loads(s)["name"] for s in _subsegments(json.loads(document)))
    finally:
        xray_recorder.configure(context=previous[0], streaming_threshold=previous[1])
        daemon.close()
    assert {f"BasicPipeline/{p}" for p in ("BeforeTee", "AnnotateFooBar", "SumSomeNum", "RemovePrefix",
                                             "AfterTee")} <= names


def _subsegments(document: dict) -> list[str]:
    found = [json.dumps(document)] if document.get("type") == "subsegment" or "parent_id" in document else []
    for child in document.get("subsegments", []):
        found.extend(_subsegments(child))
    return found


def test_rest_api_proxy_events_too(stack):
    rest = {"resource": "/events", "path": "/events", "httpMethod": "POST", "headers": {"Idempotency-Key": "r1"},
            "requestContext": {"resourcePath": "/events", "httpMethod": "POST", "stage": "prod"},
            "body": json.dumps(event(9)), "isBase64Encoded": False}
    response = aws_lambda.handler(rest, context())
    assert response["statusCode"] == 200 and json.loads(response["body"])["outputs"][0]["someNum"] == 9
    assert total() == 9


def test_a_redelivered_sqs_batch_is_counted_once(stack):
    batch = sqs_event([json.dumps(event(1)), json.dumps(event(2, foobar="taken")), json.dumps(event(4))])
    assert aws_lambda.handler(batch, context()) == {"batchItemFailures": [{"itemIdentifier": "m-1"}]}
    # Lambda retries the failed message (fixed now) beside a redelivery of the others
    batch["Records"][1]["body"] = json.dumps(event(2))
    assert aws_lambda.handler(batch, context()) == {"batchItemFailures": []}
    assert total() == 1 + 2 + 4


def test_sqs_fifo_outputs_carry_the_tee_id_as_deduplication_id(aws):
    """A redelivered record's message to a FIFO queue is dropped by SQS itself; standard queues carry the id."""
    from handlers.connectors.sqs import SqsOutput

    sqs = client("sqs")
    fifo = sqs.create_queue(QueueName="out.fifo", Attributes={"FifoQueue": "true"})["QueueUrl"]
    plain = sqs.create_queue(QueueName="out")["QueueUrl"]
    for url in (fifo, plain):
        output = SqsOutput({"queueUrl": url, "groupId": "g"})
        puts = [Put("Out", f"id-{i}", {"n": i}) for i in range(3)]
        assert output.perform(puts) == [None] * 3
        assert output.perform(puts[1:]) == [None] * 2  # the redelivery sends two of them again
    got = queue_messages(fifo)
    assert [json.loads(m["Body"])["n"] for m in got] == [0, 1, 2]
    assert [m["MessageAttributes"]["agglo-id"]["StringValue"] for m in got] == ["id-0", "id-1", "id-2"]
    again = queue_messages(plain)
    assert sorted(m["MessageAttributes"]["agglo-id"]["StringValue"] for m in again) == [
        "id-0", "id-1", "id-1", "id-2", "id-2"]  # at least once, with the id to drop duplicates by
