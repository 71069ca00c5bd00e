"""Each serverless adapter with the other cloud's connectors, against real servers: a Lambda teeing to Pub/Sub
(the emulator) and a Cloud Function keeping its state in DynamoDB (moto), both from the configs the
deployments ship."""

from __future__ import annotations

import json
import pathlib
import uuid
from types import SimpleNamespace

import pytest
from _servers import post_json
from servers import start_function

from handlers import aws_lambda
from handlers.connectors import pubsub
from handlers.connectors.aws import client

REPO = pathlib.Path(__file__).resolve().parents[2]
PROJECT = "agglo-cross"
STATE_KEY = "agg/c5024ca8-d601-499f-bb24-daae74357b5e/BasicPipeline/SumSomeNum/someNum:AggSum"
EVENTS = [{"someNum": n, "someDict": {"someFixed": "foobar"}, "someString": f"s{n}"} for n in (3, 5, 254)]


def _aws_stack() -> dict[str, str]:
    """The table, bucket and queue pipelines/aws-basic.json names, in moto, as its variables name them."""
    client("dynamodb").create_table(
        TableName="state", KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}], BillingMode="PAY_PER_REQUEST")
    client("s3").create_bucket(Bucket="tees")
    queue = client("sqs").create_queue(QueueName="out")["QueueUrl"]
    return {"AGGLO_STATE_TABLE": "state", "AGGLO_OUTPUT_BUCKET": "tees", "AGGLO_OUTPUT_QUEUE_URL": queue}


def _state_total() -> float | None:
    item = client("dynamodb").get_item(TableName="state", Key={"pk": {"S": STATE_KEY}}).get("Item")
    return None if item is None else float(item["f:value"]["N"])


@pytest.fixture
def topic(pubsub_emulator, monkeypatch):
    """A fresh topic with a pull subscription on the emulator; the connector's client pointed at it."""
    from google.cloud import pubsub_v1

    monkeypatch.setenv("PUBSUB_EMULATOR_HOST", pubsub_emulator)
    pubsub.publisher.cache_clear()
    name = f"projects/{PROJECT}/topics/tees-{uuid.uuid4().hex[:8]}"
    subscription = name.replace("/topics/", "/subscriptions/")
    pubsub_v1.PublisherClient().create_topic(name=name)
    subscriber = pubsub_v1.SubscriberClient()
    subscriber.create_subscription(name=subscription, topic=name)
    yield SimpleNamespace(name=name, subscription=subscription, subscriber=subscriber)
    subscriber.close()
    pubsub.publisher.cache_clear()


def _pulled(topic: SimpleNamespace, expected: int) -> list:
    messages: list = []
    for _ in range(20):  # the emulator may hand out a batch in parts
        answer = topic.subscriber.pull(subscription=topic.subscription, max_messages=100, timeout=10)
        messages += [m.message for m in answer.received_messages]
        if answer.received_messages:
            topic.subscriber.acknowledge(subscription=topic.subscription,
                                         ack_ids=[m.ack_id for m in answer.received_messages])
        if len(messages) >= expected:
            break
    return messages


def test_a_lambda_tees_to_pubsub_each_message_with_its_agglo_id(aws, topic, monkeypatch, tmp_path):
    """pipelines/aws-basic.json with its after-tee on Pub/Sub instead of SQS: the handler, as Lambda calls it,
    keeps the state in DynamoDB, tees to S3 and publishes to the emulator."""
    for key, value in _aws_stack().items():
        monkeypatch.setenv(key, value)
    cfg = json.loads((REPO / "pipelines/aws-basic.json").read_text())
    [after] = [e for e in cfg["externalSystems"] if e["name"] == "AfterEvents"]
    after["connectionString"] = f"pubsub:{topic.name}"
    path = tmp_path / "lambda-to-pubsub.json"
    path.write_text(json.dumps(cfg))
    monkeypatch.setenv("AGGLO_CONFIG", str(path))
    aws_lambda.reset()

    answer = aws_lambda.handler(EVENTS, None)  # a direct invocation answers with the outputs

    assert answer["errors"] == [] and len(answer["outputs"]) == len(EVENTS)
    published = {o["someNum"]: next(t["uuid"] for t in o["internal:tee:output"]
                                    if t["connectionString"] == after["connectionString"])
                 for o in answer["outputs"]}
    messages = _pulled(topic, len(EVENTS))
    got = {json.loads(m.data)["someNum"]: m for m in messages}
    assert sorted(got) == sorted(published) and len(messages) == len(EVENTS)
    for num, message in got.items():
        assert message.attributes["agglo-id"] == published[num]
        assert json.loads(message.data)["someString"] == f"s{num}"
    assert _state_total() == sum(e["someNum"] for e in EVENTS)
    assert len(client("s3").list_objects_v2(Bucket="tees", Prefix="before/").get("Contents", [])) == len(EVENTS)


def test_a_cloud_function_keeps_its_state_in_dynamodb(aws, tmp_path):
    """pipelines/aws-basic.json unchanged — DynamoDB state, S3 and SQS tees — under functions-framework's real
    server: the Cloud Function reaches moto through AWS_ENDPOINT_URL, as boto3 does anywhere."""
    stack = _aws_stack()
    server, url = start_function(str(REPO / "handlers" / "gcp_functions.py"), "on_http", {
        **stack, "AGGLO_CONFIG": str(REPO / "pipelines/aws-basic.json"), "AWS_ENDPOINT_URL": aws})
    try:
        port = int(url.rpartition(":")[2])
        status, answer = post_json(port, EVENTS, "/", headers={"Idempotency-Key": "batch-1"})
        assert status == 200, answer
        assert answer["errors"] == []
        assert [o["internal:aggregation:BasicPipeline"]["someNum:AggSum"]["value"] for o in answer["outputs"]] == \
            [3, 8, 262]
        # The same records again (the same key and body): DynamoDB's marks keep the state from counting twice.
        assert post_json(port, EVENTS, "/", headers={"Idempotency-Key": "batch-1"})[0] == 200
    finally:
        server.stop()
    assert _state_total() == 262
    assert len(client("s3").list_objects_v2(Bucket="tees", Prefix="before/").get("Contents", [])) == len(EVENTS)
    received = client("sqs").receive_message(QueueUrl=stack["AGGLO_OUTPUT_QUEUE_URL"], MaxNumberOfMessages=10)
    bodies: dict[int, set[str]] = {}
    for message in received.get("Messages", []):
        bodies.setdefault(json.loads(message["Body"])["someNum"], set()).add(message["Body"])
    # A tee is at least once: the redelivery sends each event again, as the same message.
    assert sorted(bodies) == [3, 5, 254] and all(len(sent) == 1 for sent in bodies.values())
