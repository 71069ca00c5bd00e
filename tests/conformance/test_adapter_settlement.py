"""A poison record and a transient failure through every adapter: each ends where the settlement table says.

Every batch holds good records, one poison record (its own data fails the
``Mark`` annotator) and one record whose output is refused by a real HTTP endpoint
(an outside system: transient). In each adapter the good records go through, the
transient one is handed back to the platform to deliver again, and the poison one
goes to the dead-letter system when one is configured, else to the trigger's own
place for failed records, else is logged and acknowledged, so the stream moves on.
Lambda runs against moto (state in DynamoDB), the others against SQLite.
"""

from __future__ import annotations

import base64
import json
import pathlib
import sqlite3
import uuid
from types import SimpleNamespace

import orjson
import pytest
from builders import config, external, kv
from servers import JsonHook

from handlers.connectors import default_registry
from handlers.connectors.aws import client

GOOD, POISON, FLAKY = {"n": 1}, {"n": 10, "seen": "already"}, {"n": 100, "flaky": True}
LAST = {"n": 2}


class Endpoint:
    """An HTTP output that refuses (503) events marked ``flaky`` while ``down``."""

    def __init__(self) -> None:
        self.down = True
        self.hook = JsonHook(lambda hook, headers, body: (503, b"{}") if body.get("flaky") and self.down
                             else (200, b"{}"))


@pytest.fixture
def endpoint():
    e = Endpoint()
    yield e
    e.hook.close()


def pipeline(endpoint: Endpoint, state: dict, letters: pathlib.Path) -> dict:
    return config({"annotator": {"name": "Mark", "annotations": [{"fieldKey": "seen", "value": "yes"}]}},
                  {"aggregator": {"name": "Sum", "stateStore": "State", "forwardState": True,
                                  "aggregation": {"key": "n", "aggregationType": "AggSum"}}},
                  {"tee": {"name": "Send", "outputConnectorRef": "Web"}},
                  externals=(state, external("ExternalHttp", "Web", endpoint.hook.url),
                             external("ExternalLocalFile", "Letters", str(letters))))


def dead_letters(letters: pathlib.Path) -> list[dict]:
    return sorted((json.loads(p.read_text()) for p in letters.glob("*.json")), key=lambda d: d["record"])


# --- Lambda: SQS, Kinesis, DynamoDB Streams --------------------------------------------------------

def lambda_context() -> SimpleNamespace:
    return SimpleNamespace(aws_request_id=str(uuid.uuid4()), function_name="agglo", memory_limit_in_mb=512,
                           invoked_function_arn="arn:aws:lambda:us-east-1:123456789012:function:agglo",
                           get_remaining_time_in_millis=lambda: 30_000)


def sqs_event(events: list[dict]) -> dict:
    return {"Records": [{
        "messageId": f"m-{i}", "receiptHandle": f"rh-{i}", "body": json.dumps(e), "md5OfBody": "x",
        "attributes": {"ApproximateReceiveCount": "1", "SentTimestamp": "1"}, "messageAttributes": {},
        "eventSource": "aws:sqs", "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:input",
        "awsRegion": "us-east-1"} for i, e in enumerate(events)]}


def kinesis_event(events: list[dict]) -> dict:
    return {"Records": [{
        "kinesis": {"kinesisSchemaVersion": "1.0", "partitionKey": "k", "sequenceNumber": f"4959{i:020d}",
                    "data": base64.b64encode(json.dumps(e).encode()).decode(), "approximateArrivalTimestamp": 1.5},
        "eventSource": "aws:kinesis", "eventVersion": "1.0", "eventID": f"shardId-000000000000:4959{i:020d}",
        "eventName": "aws:kinesis:record", "awsRegion": "us-east-1",
        "eventSourceARN": "arn:aws:kinesis:us-east-1:123456789012:stream/in"} for i, e in enumerate(events)]}


def dynamodb_event(events: list[dict]) -> dict:
    def image(e: dict) -> dict:
        return {k: {"BOOL": v} if isinstance(v, bool) else {"N": str(v)} if isinstance(v, int) else {"S": v}
                for k, v in e.items()}

    return {"Records": [{
        "eventID": f"e-{i}", "eventName": "INSERT", "eventSource": "aws:dynamodb", "awsRegion": "us-east-1",
        "dynamodb": {"Keys": {"id": {"N": str(i)}}, "NewImage": image(e), "SequenceNumber": f"{i + 1}00",
                     "SizeBytes": 10, "StreamViewType": "NEW_IMAGE"}} for i, e in enumerate(events)]}


def failure_ids(trigger: str) -> tuple[str, str]:
    """How Lambda names the poison (second) and the flaky (third) record of a batch."""
    return {"sqs": ("m-1", "m-2"), "kinesis": (f"4959{1:020d}", f"4959{2:020d}"),
            "dynamodb": ("200", "300")}[trigger]


EVENTS = {"sqs": sqs_event, "kinesis": kinesis_event, "dynamodb": dynamodb_event}


@pytest.fixture
def lambda_stack(aws, endpoint, tmp_path, monkeypatch):
    from handlers import aws_lambda

    client("dynamodb").create_table(TableName="state", KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
                                    AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
                                    BillingMode="PAY_PER_REQUEST")
    letters = tmp_path / "letters"
    path = tmp_path / "pipeline.json"
    path.write_text(json.dumps(pipeline(endpoint, kv(cs="dynamo:tableName=state"), letters)))
    monkeypatch.setenv("AGGLO_CONFIG", str(path))
    for name in ("AGGLO_DEAD_LETTER", "AGGLO_STREAM_ON_FAILURE"):
        monkeypatch.delenv(name, raising=False)

    def configure(**env: str) -> None:
        for k, v in env.items():
            monkeypatch.setenv(k, v)
        aws_lambda.reset()

    return SimpleNamespace(letters=letters, configure=configure)


def lambda_total() -> float:
    item = client("dynamodb").get_item(TableName="state", Key={"pk": {"S": (
        "agg/c5024ca8-d601-499f-bb24-daae74357b5e/P/Sum/n:AggSum")}}).get("Item")
    return float(item["f:value"]["N"])


# (trigger, environment) -> is the poison record reported to Lambda, and is it dead-lettered
LAMBDA_CASES = [
    ("sqs", {}, True, False),  # the queue's redrive policy takes it to the queue's DLQ
    ("sqs", {"AGGLO_DEAD_LETTER": "Letters"}, False, True),
    ("kinesis", {}, False, False),  # logged; the shard moves on
    ("kinesis", {"AGGLO_STREAM_ON_FAILURE": "true"}, True, False),  # bounded retries, then OnFailure
    ("kinesis", {"AGGLO_DEAD_LETTER": "Letters", "AGGLO_STREAM_ON_FAILURE": "true"}, False, True),
    ("dynamodb", {}, False, False),
    ("dynamodb", {"AGGLO_STREAM_ON_FAILURE": "true"}, True, False),
    ("dynamodb", {"AGGLO_DEAD_LETTER": "Letters"}, False, True),
]


@pytest.mark.parametrize(("trigger", "env", "reported", "lettered"), LAMBDA_CASES,
                         ids=[f"{t}-{'+'.join(sorted(e)) or 'plain'}" for t, e, _, _ in LAMBDA_CASES])
def test_lambda_batches_settle_poison_and_transient_records_as_the_table_says(
        lambda_stack, endpoint, trigger, env, reported, lettered):
    from handlers import aws_lambda

    lambda_stack.configure(**env)
    poison_id, flaky_id = failure_ids(trigger)
    batch = EVENTS[trigger]([GOOD, POISON, FLAKY, LAST])
    response = aws_lambda.handler(batch, lambda_context())
    failures = [f["itemIdentifier"] for f in response["batchItemFailures"]]
    assert failures == ([poison_id] if reported else []) + [flaky_id]
    assert sorted(b["n"] for _, b in endpoint.hook.requests if not b.get("flaky")) == [1, 2]  # the rest went on
    letters = dead_letters(lambda_stack.letters)
    if lettered:
        [letter] = letters
        assert letter["event"]["n"] == 10 and letter["errors"][0]["process"] == "Mark"
    else:
        assert letters == []

    # The platform delivers the transient record again once the endpoint is back: it goes through, counted once.
    endpoint.down = False
    again = {"Records": [batch["Records"][2]]}
    assert aws_lambda.handler(again, lambda_context()) == {"batchItemFailures": []}
    assert lambda_total() == 1 + 100 + 2


def apigw(event: dict) -> dict:
    return {"version": "2.0", "routeKey": "$default", "rawPath": "/", "headers": {},
            "requestContext": {"http": {"method": "POST", "path": "/"}}, "body": json.dumps(event),
            "isBase64Encoded": False}


def test_lambda_http_answers_422_for_poison_and_503_with_retry_after_for_transient(lambda_stack, endpoint):
    from handlers import aws_lambda

    lambda_stack.configure(AGGLO_DEAD_LETTER="Letters")
    poison = aws_lambda.handler(apigw(POISON), lambda_context())
    assert poison["statusCode"] == 422 and json.loads(poison["body"])["errors"][0]["process"] == "Mark"
    flaky = aws_lambda.handler(apigw(FLAKY), lambda_context())
    assert flaky["statusCode"] == 503 and flaky["headers"]["Retry-After"] == "1"
    assert json.loads(flaky["body"])["errors"][0]["transient"] is True
    assert aws_lambda.handler(apigw(GOOD), lambda_context())["statusCode"] == 200
    assert dead_letters(lambda_stack.letters) == []  # the caller was told; nothing is dead-lettered behind it


# --- Cloud Functions: Pub/Sub ----------------------------------------------------------------------

def cloud_function_app(endpoint: Endpoint, tmp_path: pathlib.Path, dead_letter: str | None):
    from agglo_core import compile_plan
    from handlers import gcp_functions
    from handlers.runtime.driver import Runtime

    letters = tmp_path / "letters"
    cfg = pipeline(endpoint, kv(cs=f"sqlite:{tmp_path / 'state.db'}"), letters)
    runtime = Runtime.build(compile_plan(cfg), default_registry())
    return gcp_functions.CloudFunctionApp(runtime, dead_letter), letters


def pubsub_event(event: dict, mid: str):
    from cloudevents.http import CloudEvent

    from handlers.sources.gcp import PUBSUB_PUBLISHED

    message = {"data": base64.b64encode(json.dumps(event).encode()).decode(), "messageId": mid,
               "publishTime": "2024-01-01T00:00:00Z", "attributes": {}}
    return CloudEvent({"type": PUBSUB_PUBLISHED, "source": "//pubsub.googleapis.com/t", "id": mid},
                      {"message": message, "subscription": "projects/p/subscriptions/s"})


@pytest.mark.parametrize("dead_letter", [None, "Letters"])
def test_pubsub_acks_poison_and_nacks_transient(endpoint, tmp_path, dead_letter, caplog):
    from handlers import gcp_functions

    app, letters = cloud_function_app(endpoint, tmp_path, dead_letter)
    app.cloud_event(pubsub_event(GOOD, "p-0"))  # acknowledged
    app.cloud_event(pubsub_event(POISON, "p-1"))  # acknowledged too: it never loops on the subscription
    with pytest.raises(gcp_functions.TransientFailure):
        app.cloud_event(pubsub_event(FLAKY, "p-2"))  # not acknowledged: Pub/Sub delivers it again
    app.cloud_event(pubsub_event(LAST, "p-3"))
    if dead_letter:
        [letter] = dead_letters(letters)
        assert letter["record"] == "p-1" and letter["event"]["n"] == 10
    else:
        assert dead_letters(letters) == [] and "acknowledged with nowhere to go" in caplog.text
    endpoint.down = False
    app.cloud_event(pubsub_event(FLAKY, "p-2"))
    assert sorted(b["n"] for _, b in endpoint.hook.requests if not b.get("flaky")) == [1, 2]
    assert [b["n"] for _, b in endpoint.hook.requests if b.get("flaky")] == [100, 100]  # refused, then accepted


def test_cloud_function_direct_posts_answer_422_and_503(endpoint, tmp_path):
    app, _ = cloud_function_app(endpoint, tmp_path, "Letters")

    class Request:
        def __init__(self, body: object) -> None:
            self.data, self.headers, self.content_length = json.dumps(body).encode(), {}, None

        def get_data(self) -> bytes:
            return self.data

    assert app.http(Request([GOOD, LAST]))[1] == 200
    assert app.http(Request([GOOD, POISON]))[1] == 422
    answer, status, headers = app.http(Request([POISON, FLAKY]))
    assert status == 503 and headers == {"Retry-After": "1"} and len(answer["errors"]) == 2


# --- the durable queue -----------------------------------------------------------------------------

def test_durable_queue_parks_poison_in_failed_and_keeps_transient_queued(endpoint, tmp_path):
    from agglo_core import compile_plan
    from handlers.daemons.queue import DurableQueue
    from handlers.runtime.driver import Runtime

    cfg = pipeline(endpoint, kv(cs=f"sqlite:{tmp_path / 'state.db'}"), tmp_path / "letters")
    runtime = Runtime.build(compile_plan(cfg), default_registry())
    now = [1000.0]
    queue = DurableQueue(str(tmp_path / "q"), backoff_s=1, clock=lambda: now[0])
    try:
        for i, e in enumerate([GOOD, POISON, FLAKY, LAST]):
            queue.put(f"http:{i}", orjson.dumps(e))
        assert queue.work_once(runtime)
        assert queue.counts() == {"inflight": 0, "unprocessed": 1, "failed": 1}
        endpoint.down = False
        now[0] += 1
        assert queue.work_once(runtime)
        assert queue.counts() == {"inflight": 0, "unprocessed": 0, "failed": 1}
    finally:
        queue.close()
    conn = sqlite3.connect(tmp_path / "q" / "queue.db")
    try:
        [(body, errors)] = conn.execute("SELECT body, errors FROM failed").fetchall()
    finally:
        conn.close()
    assert orjson.loads(body) == POISON and orjson.loads(errors)[0]["process"] == "Mark"
    assert sorted(b["n"] for _, b in endpoint.hook.requests if not b.get("flaky")) == [1, 2]
    assert [b["n"] for _, b in endpoint.hook.requests if b.get("flaky")] == [100, 100]  # refused, then accepted


# --- Lambda: S3 (an asynchronous invocation) -------------------------------------------------------

def s3_event(bucket: str, key: str) -> dict:
    return {"Records": [{
        "eventVersion": "2.1", "eventSource": "aws:s3", "awsRegion": "us-east-1", "eventName": "ObjectCreated:Put",
        "s3": {"s3SchemaVersion": "1.0", "bucket": {"name": bucket, "arn": f"arn:aws:s3:::{bucket}"},
               "object": {"key": key, "size": 1, "eTag": "x"}}}]}


def test_s3_dead_letters_poison_fails_for_transient_and_its_chunks_share_one_retry_budget(
        lambda_stack, endpoint, tmp_path, monkeypatch):
    """Three chunks, each with a record the endpoint refuses: all three together sleep within one budget."""
    from agglo_core import compile_plan
    from handlers import aws_lambda
    from handlers.runtime.driver import Runtime
    from handlers.runtime.settlement import RetryLimits

    monkeypatch.setattr(aws_lambda, "S3_CHUNK", 2)
    client("s3").create_bucket(Bucket="input")
    lines = [GOOD, FLAKY, POISON, {"n": 100, "flaky": True, "k": 2}, LAST, {"n": 100, "flaky": True, "k": 3}]
    client("s3").put_object(Bucket="input", Key="in.jsonl", Body="\n".join(json.dumps(e) for e in lines).encode())
    cfg = pipeline(endpoint, kv(cs="dynamo:tableName=state"), lambda_stack.letters)
    cfg["pipelines"][0]["processes"][2]["retryStrategy"] = {"numRetries": 50, "initialBackOffMs": 1000}
    sleeps: list[float] = []
    runtime = Runtime.build(compile_plan(cfg), default_registry(), sleep=sleeps.append, rand=lambda: 1.0,
                            retry_limits=RetryLimits(max_sleep_s=1, budget_s=2.5))
    app = aws_lambda.LambdaApp(runtime, dead_letter="Letters")
    with pytest.raises(aws_lambda.RecordsFailed, match="3 of 6 record"):
        app(s3_event("input", "in.jsonl"), lambda_context())  # Lambda retries the event, then OnFailure
    assert sleeps == [1, 1]  # not 2 per chunk: the invocation's budget
    [letter] = dead_letters(lambda_stack.letters)
    assert letter["record"] == "input/in.jsonl@null#3" and letter["event"]["n"] == 10
    endpoint.down = False
    assert app(s3_event("input", "in.jsonl"), lambda_context()) == {"records": 6, "failed": 1, "deadLettered": 1}
    assert lambda_total() == 1 + 100 + 100 + 2 + 100  # the redelivered event counted each record once


def test_a_dead_letter_name_the_config_does_not_have_fails_the_cold_start(lambda_stack):
    from handlers import aws_lambda

    lambda_stack.configure(AGGLO_DEAD_LETTER="Leters")
    with pytest.raises(ValueError, match="AGGLO_DEAD_LETTER names 'Leters'.*Letters"):
        aws_lambda.handler(sqs_event([GOOD]), lambda_context())
