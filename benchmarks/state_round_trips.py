"""Workload 4: DynamoDB calls for an SQS batch of 100 records over 5 group keys, through the Lambda handler.

Runs against moto in server mode on 127.0.0.1 (a process started here) and counts the
DynamoDB API calls by operation with botocore's event hooks, first without
deduplication (agglo run's default) and then with it (the Lambda default).
"""

from __future__ import annotations

import json
import os
import tempfile
from collections import Counter
from typing import Any

from benchmarks._aws import create_state_table, moto_server

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
    from handlers.runtime.driver import Runtime

    with moto_server(), tempfile.TemporaryDirectory() as tmp:
        os.environ.update(AGGLO_CONFIG=f"{tmp}/config.json", POWERTOOLS_LOG_LEVEL="ERROR")
        _config(f"{tmp}/config.json")
        aws_clients.client.cache_clear()
        dynamodb = aws_clients.client("dynamodb", None, None)  # the client the connector uses
        create_state_table(dynamodb)
        try:
            calls: Counter[str] = Counter()
            dynamodb.meta.events.register("before-call.dynamodb.*",
                                          lambda model, **_: calls.update([model.name]))
            results = {}
            for label, dedupe, offset in (("without dedupe", False, 0), ("with dedupe", True, RECORDS)):
                aws_lambda.reset()
                app = aws_lambda.LambdaApp.from_environment()
                app.runtime = Runtime(app.runtime.plan, app.runtime.connectors, app.runtime.execs,
                                      observe=app.runtime.observe, dedupe=dedupe)
                aws_lambda._app = app
                calls.clear()
                answer = aws_lambda.handler(_sqs_event(offset), None)
                assert answer == {"batchItemFailures": []}, answer
                results[label] = dict(calls)
            return results
        finally:
            aws_lambda.reset()
            aws_clients.client.cache_clear()
