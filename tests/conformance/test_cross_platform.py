"""One config, one set of events, two platforms: ``agglo run`` on this machine and the Lambda handler (SQS or
Kinesis batches), both against DynamoDB state and S3 tees on moto, each in its own table and bucket.

Generated configs (an aggregator of any type, grouped or not, then a tee) and generated events: what each
platform tees and the state each leaves in its table must be the same. Record ids differ by platform (a file
line, a message id), so tee uuids and dedupe marks' keys differ by design and are left out; the marks
themselves (one per record, each remembering the state it wrote) must not.
"""

from __future__ import annotations

import json
import pathlib
import subprocess
import sys
import uuid
from typing import Any

from builders import config, external, kv
from cloud_examples import dynamo_items
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_adapter_settlement import kinesis_event, lambda_context, sqs_event

from handlers.connectors.aws import client

AGGREGATIONS = ["AggSum", "AggCount", "AggMax", "AggMin", "AggAvg", "AggDiscreteHistogram"]
PREFIX = "out/"


def pipeline(aggregation: str, grouped: bool) -> dict:
    """Count events into DynamoDB state (``${AGGLO_STATE_TABLE}``), then tee them to S3 with that state."""
    return config({"aggregator": {"name": "Agg", "stateStore": "State", "forwardState": True,
                                  "aggregation": {"key": "n", "aggregationType": aggregation,
                                                  "groupByKeys": ["g"] if grouped else []}}},
                  {"tee": {"name": "Keep", "outputConnectorRef": "Tees"}},
                  externals=(kv(cs="dynamo:tableName=${AGGLO_STATE_TABLE}"),
                             external("ExternalObjectStore", "Tees",
                                      f"s3:bucketName=${{AGGLO_OUTPUT_BUCKET}},prefix={PREFIX}")))


EVENTS = st.lists(st.fixed_dictionaries({"n": st.integers(-50, 50), "g": st.sampled_from(["eu", "us", "ap"])}),
                  min_size=1, max_size=40).map(lambda events: [{**e, "i": i} for i, e in enumerate(events)])


TRIGGERS = {"sqs": sqs_event, "kinesis": kinesis_event}


def new_stack() -> dict[str, str]:
    """A table and a bucket of their own, as the config's environment names them."""
    name = f"x{uuid.uuid4().hex[:12]}"
    client("dynamodb").create_table(TableName=name, KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
                                    AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
                                    BillingMode="PAY_PER_REQUEST")
    client("s3").create_bucket(Bucket=name)
    return {"AGGLO_STATE_TABLE": name, "AGGLO_OUTPUT_BUCKET": name}


def by_agg_run(path: pathlib.Path, events: list[dict], env: dict[str, str]) -> list[dict]:
    """``agglo run --dedupe`` on a file of the events; its outputs."""
    (path.parent / "events.jsonl").write_text("".join(json.dumps(e) + "\n" for e in events))
    proc = subprocess.run([sys.executable, "-m", "handlers.local", "run", "-c", str(path), "-i", "events.jsonl",
                           "--dedupe"], capture_output=True, cwd=path.parent, timeout=120, check=False, env=env)
    assert proc.returncode == 0, proc.stderr.decode()
    return [json.loads(line) for line in proc.stdout.splitlines()]


def by_lambda(trigger: str, events: list[dict], batch_size: int) -> None:
    """The Lambda handler, given the events in batches as its trigger would deliver them, one after another."""
    from handlers import aws_lambda

    aws_lambda.reset()
    records = TRIGGERS[trigger](events)["Records"]  # each with an id of its own across the batches
    for first in range(0, len(records), batch_size):
        batch = {"Records": records[first:first + batch_size]}
        assert aws_lambda.handler(batch, lambda_context()) == {"batchItemFailures": []}


def tee_bodies(bucket: str) -> list[dict]:
    """What the tee wrote, in input order (by the events' ``i``)."""
    s3 = client("s3")
    listing = s3.list_objects_v2(Bucket=bucket, Prefix=PREFIX).get("Contents", [])
    return sorted((json.loads(s3.get_object(Bucket=bucket, Key=o["Key"])["Body"].read()) for o in listing),
                  key=lambda body: body["i"])


def final_state(table: str) -> dict[str, Any]:
    """The table's state items (without ``v``, a count of writes, which depends on how records were batched)
    and its dedupe marks (without their keys, which derive from record ids, and their expiry time)."""
    items = dynamo_items(table)
    state = {key: {k: v for k, v in item.items() if k != "v"} for key, item in items.items()
             if not key.startswith("mark/")}
    marks = sorted(json.dumps(item["after"], sort_keys=True) for key, item in items.items() if key.startswith("mark/"))
    return {"state": state, "marks": marks}


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(aggregation=st.sampled_from(AGGREGATIONS), grouped=st.booleans(), events=EVENTS,
       trigger=st.sampled_from(sorted(TRIGGERS)), batch_size=st.integers(1, 10))
def test_agglo_run_and_lambda_leave_the_same_state_and_tee_the_same_events(
        aws, tmp_path_factory, monkeypatch, aggregation, grouped, events, trigger, batch_size):
    import os

    path = tmp_path_factory.mktemp("config") / "pipeline.json"
    path.write_text(json.dumps(pipeline(aggregation, grouped)))

    local = new_stack()
    outputs = by_agg_run(path, events, {**os.environ, **local})

    in_lambda = new_stack()
    for key, value in {"AGGLO_CONFIG": str(path), **in_lambda}.items():
        monkeypatch.setenv(key, value)
    by_lambda(trigger, events, batch_size)

    # agglo run's outputs are what it teed; the Lambda teed the same, and both tables hold the same.
    teed = tee_bodies(local["AGGLO_OUTPUT_BUCKET"])
    assert [{k: v for k, v in o.items() if k != "internal:tee:output"} for o in outputs] == teed
    assert tee_bodies(in_lambda["AGGLO_OUTPUT_BUCKET"]) == teed
    assert len(teed) == len(events)
    local_state = final_state(local["AGGLO_STATE_TABLE"])
    assert local_state["state"] and len(local_state["marks"]) == len(events)
    assert final_state(in_lambda["AGGLO_STATE_TABLE"]) == local_state
