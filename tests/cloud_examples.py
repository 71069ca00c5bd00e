"""What the example configs for the cloud (pipelines/aws-basic.json, pipelines/gcp.json) write, run by the
README's commands ("The same config against the cloud") against moto and Google's emulators."""

from __future__ import annotations

import pathlib
import shutil
from itertools import accumulate

from builders import PARTITION

from agglo_core.ids import IdMaker

REPO = pathlib.Path(__file__).resolve().parents[1]
HEADING = "The same config against the cloud"
BEFORE_TEE = IdMaker(PARTITION, "BasicPipeline", "BeforeTee", "tee")
AFTER_TEE = IdMaker(PARTITION, "BasicPipeline", "AfterTee", "tee")
SUM_KEY = f"agg/{PARTITION}/BasicPipeline/SumSomeNum/someNum:AggSum"
SOURCE = {"internal:partitionID": PARTITION, "internal:name": "BasicPipeline"}
"""What the pipeline adds to an event before its first process (BeforeTee)."""


def dynamo_items(table: str, region: str = "us-east-1") -> dict[str, dict]:
    """Every item of a DynamoDB table, as plain values (numbers as the connector reads them), by key."""
    from boto3.dynamodb.types import TypeDeserializer

    from handlers.connectors.aws import client
    from handlers.connectors.dynamo import from_dynamo

    deserialize = TypeDeserializer().deserialize
    pages = client("dynamodb", region).get_paginator("scan").paginate(TableName=table)
    return {item["pk"]["S"]: {name: from_dynamo(deserialize(value)) for name, value in item.items() if name != "pk"}
            for page in pages for item in page["Items"]}


def copy_examples(directory: pathlib.Path) -> None:
    """The example pipelines and events in ``directory``, where the README's commands run."""
    for name in ("pipelines", "events"):
        shutil.copytree(REPO / name, directory / name)


def check_run(events: list[dict], outputs: list[dict], objects: dict[str, dict], messages: list[dict]) -> int:
    """One run of the basic pipeline over ``events``: each output keeps its event and forwards the running sum;
    BeforeTee stored each event under ``before/<its uuid>``; AfterTee published each output (as it was before
    its own entry) with its uuid as ``agglo-id`` (``messages``: ``{"id", "body"}``). Returns the sum."""
    assert [{k: o[k] for k in e} for e, o in zip(events, outputs, strict=True)] == events
    forwarded = [o["internal:aggregation:BasicPipeline"]["someNum:AggSum"]["value"] for o in outputs
                 if "someNum" in o]
    assert forwarded == list(accumulate(e["someNum"] for e in events if "someNum" in e))
    tees = [o["internal:tee:output"] for o in outputs]
    assert all([t["outputType"] for t in tee] == ["object", "pubsub"] for tee in tees)
    assert objects == {f"before/{tee[0]['uuid']}": {**e, **SOURCE} for e, tee in zip(events, tees, strict=True)}
    assert sorted(m["id"] for m in messages) == sorted(tee[1]["uuid"] for tee in tees)
    bodies = {m["id"]: m["body"] for m in messages}
    for output, tee in zip(outputs, tees, strict=True):
        assert bodies[tee[1]["uuid"]] == {**output, "internal:tee:output": tee[:1]}
    return forwarded[-1]
