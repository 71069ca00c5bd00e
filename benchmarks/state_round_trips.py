"""Workload 4: DynamoDB calls for an SQS batch of 100 records over 5 group keys, through the Lambda handler.

Runs against moto in server mode on 127.0.0.1 (a process started here) and counts the
DynamoDB API calls by operation with botocore's event hooks, first without
deduplication (agglo run's default) and then with it (the Lambda default).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from typing import Any

GROUPS = 5
RECORDS = 100


def _config(path: str) -> None:
    cfg = {"partitionUuid": "c5024ca8-d601-499f-bb24-daae74357b5e",
           "pipelines": [{"name": "P", "processes": [{"name": "Sum"}]}],
           "processDefinitions": [{"aggregator": {
               "name": "Sum", "stateStore": "State", "forwardState": True,
               "aggregation": {"key": "n", "aggregationType": "AggSum", "groupByKeys": ["g"]}}}],
           "externalSystems": [{"name": "State", "externalType": "ExternalKVStore",
                                "connectionString": "dynamo:tableName=state"}]}
    with open(path, "w") as f:
        json.dump(cfg, f)


def _sqs_event(offset: int) -> dict:
    return {"Records": [{"messageId": f"m-{offset + i}", "body": json.dumps({"n": i, "g": i % GROUPS}),
                         "eventSource": "aws:sqs", "eventSourceARN": "arn:aws:sqs:us-east-1:1:in",
                         "attributes": {}} for i in range(RECORDS)]}


def measure() -> dict[str, Any]:
    from handlers import aws_lambda
    from handlers.connectors import aws as aws_clients
    from handlers.runtime import Runtime

    host, port = "127.0.0.1", _free_port()
    server = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", host, "-p", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _wait_for(f"http://{host}:{port}/moto-api/")
    saved = dict(os.environ)
    tmp = tempfile.mkdtemp()
    try:
        os.environ.update(AWS_ENDPOINT_URL=f"http://{host}:{port}", AWS_ACCESS_KEY_ID="bench",
                          AWS_SECRET_ACCESS_KEY="bench", AWS_DEFAULT_REGION="us-east-1",
                          AGGLO_CONFIG=f"{tmp}/config.json", POWERTOOLS_LOG_LEVEL="ERROR")
        _config(f"{tmp}/config.json")
        aws_clients.client.cache_clear()
        dynamodb = aws_clients.client("dynamodb", None, None)  # the client the connector uses
        dynamodb.create_table(TableName="state", KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
                              AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
                              BillingMode="PAY_PER_REQUEST")
        calls: Counter[str] = Counter()
        dynamodb.meta.events.register("before-call.dynamodb.*",
                                      lambda model, **_: calls.update([model.name]))
        results = {}
        for label, dedupe, offset in (("without dedupe", False, 0), ("with dedupe", True, RECORDS)):
            aws_lambda.reset()
            app = aws_lambda.App.from_environment()
            app.runtime = Runtime(app.runtime.plan, app.runtime.connectors, app.runtime.execs,
                                  observe=app.instruments.observe, dedupe=dedupe)
            aws_lambda._app = app
            calls.clear()
            answer = aws_lambda.handler(_sqs_event(offset), None)
            assert answer == {"batchItemFailures": []}, answer
            results[label] = dict(calls)
        return results
    finally:
        aws_lambda.reset()
        aws_clients.client.cache_clear()
        for key in set(os.environ) - set(saved):
            del os.environ[key]
        os.environ.update(saved)
        server.kill()
        server.wait(10)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_for(url: str, timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            urllib.request.urlopen(url, timeout=2).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)
