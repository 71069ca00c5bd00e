"""AWS Lambda payloads -> Records with ids that are stable across redelivery.

| trigger | record id | reported on failure as |
|---|---|---|
| SQS (also SNS-wrapped bodies) | ``messageId`` | ``messageId`` |
| Kinesis | ``eventID`` (shard + sequence number) | sequence number |
| DynamoDB Streams | ``eventID`` | sequence number |
| S3 ``ObjectCreated`` | ``bucket/key@version#n`` (one per JSON element or line) | logged / dead-letter |
| API Gateway, function URL | ``Idempotency-Key`` header (``#n`` per array element), else a new id | HTTP status |
| direct invocation | ``invoke:<request id>#n`` | in the response |
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterator
from typing import Any
from urllib.parse import unquote_plus

import orjson

from agglo_core.records import parse_json
from handlers.connectors.dynamo import from_dynamo
from handlers.sources import TriggerRecord, Unreadable

SQS, SNS, KINESIS, DYNAMODB, S3, HTTP, DIRECT = "sqs", "sns", "kinesis", "dynamodb", "s3", "http", "direct"
_SOURCES = {"aws:sqs": SQS, "aws:sns": SNS, "aws:kinesis": KINESIS, "aws:dynamodb": DYNAMODB, "aws:s3": S3}


class UnrecognisedEvent(ValueError):
    pass


def detect(event: Any) -> str:
    """Which trigger sent ``event``."""
    if isinstance(event, list):
        return DIRECT
    if not isinstance(event, dict):
        raise UnrecognisedEvent(f"a Lambda event must be a JSON object or list, got {type(event).__name__}")
    records = event.get("Records")
    if isinstance(records, list) and records and isinstance(records[0], dict):
        first = records[0]
        source = first.get("eventSource") or first.get("EventSource")
        if source in _SOURCES:
            return _SOURCES[source]
        raise UnrecognisedEvent(f"records from an unsupported event source {source!r} "
                                f"(supported: {', '.join(sorted(_SOURCES))})")
    if "requestContext" in event and ("body" in event or "httpMethod" in event or "routeKey" in event):
        return HTTP
    return DIRECT


def _json(data: bytes | str, what: str) -> tuple[Any, object]:
    """The event in ``data`` (or why there is none) and the proof that it can be written (see ``parse_json``)."""
    try:
        value, proof = parse_json(data)
    except orjson.JSONDecodeError as e:
        return Unreadable(f"{what} is not valid JSON: {e}"), None
    return (value, proof) if isinstance(value, dict) else (Unreadable(f"{what} must be a JSON object"), None)


def sqs_items(event: dict) -> list[TriggerRecord]:
    items = []
    for r in event["Records"]:
        payload, proof = _json(r.get("body", ""), "the message body")
        if isinstance(payload, dict) and payload.get("Type") == "Notification" and "TopicArn" in payload:
            payload, proof = _json(payload.get("Message", ""), "the SNS message")
        group = (r.get("attributes") or {}).get("MessageGroupId")
        items.append(TriggerRecord(r["messageId"], payload, r["messageId"], group, proof))
    return items


def sns_items(event: dict) -> list[TriggerRecord]:
    items = []
    for r in event["Records"]:
        payload, proof = _json(r["Sns"].get("Message", ""), "the SNS message")
        items.append(TriggerRecord(r["Sns"]["MessageId"], payload, proof=proof))
    return items


def kinesis_items(event: dict) -> list[TriggerRecord]:
    items = []
    for r in event["Records"]:
        k = r["kinesis"]
        try:
            payload, proof = _json(base64.b64decode(k["data"], validate=True), "the Kinesis data")
        except (binascii.Error, ValueError) as e:
            payload, proof = Unreadable(f"the Kinesis data is not base64: {e}"), None
        items.append(TriggerRecord(r.get("eventID") or k["sequenceNumber"], payload, k["sequenceNumber"],
                                   proof=proof))
    return items


def _plain(value: Any) -> Any:
    """A deserialized DynamoDB value as plain JSON: Decimals as numbers, sets as lists, bytes as base64."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | set | frozenset):
        items = [_plain(v) for v in value]
        return sorted(items, key=repr) if isinstance(value, set | frozenset) else items
    if isinstance(value, bytes | bytearray):
        return base64.b64encode(value).decode()
    if hasattr(value, "value") and type(value).__name__ == "Binary":
        return base64.b64encode(value.value).decode()
    return from_dynamo(value)


def dynamodb_items(event: dict) -> list[TriggerRecord]:
    from boto3.dynamodb.types import TypeDeserializer

    de = TypeDeserializer()

    def image(raw: dict | None) -> dict | None:
        return None if raw is None else {k: _plain(de.deserialize(v)) for k, v in raw.items()}

    items = []
    for r in event["Records"]:
        d = r["dynamodb"]
        new, old = image(d.get("NewImage")), image(d.get("OldImage"))
        payload = dict(new if new is not None else old or {})
        payload["internal:dynamodb"] = {"eventName": r.get("eventName"), "keys": image(d.get("Keys")),
                                        "oldImage": old}
        items.append(TriggerRecord(r["eventID"], payload, d["SequenceNumber"]))
    return items


def s3_objects(event: dict) -> Iterator[tuple[str, str, str | None]]:
    """(bucket, key, version) of each object in an S3 notification; keys arrive URL-encoded."""
    for r in event["Records"]:
        obj = r["s3"]["object"]
        yield r["s3"]["bucket"]["name"], unquote_plus(obj["key"]), obj.get("versionId") or None


def s3_record_id(bucket: str, key: str, version: str | None, n: int) -> str:
    return f"{bucket}/{key}@{version or 'null'}#{n}"


def http_request(event: dict) -> tuple[bytes, str | None]:
    """An API Gateway or function URL request's body and its ``Idempotency-Key`` (headers in any case)."""
    body = event.get("body") or ""
    try:
        raw = base64.b64decode(body, validate=True) if event.get("isBase64Encoded") else body.encode()
    except (binascii.Error, ValueError):
        raw = b""  # refused as "not valid JSON" by the caller, like any other unreadable body
    headers = {k.lower(): v for k, v in (event.get("headers") or {}).items()}
    return raw, headers.get("idempotency-key")


def direct_items(event: Any, request_id: str) -> list[TriggerRecord]:
    events = event if isinstance(event, list) else [event]
    return [TriggerRecord(f"invoke:{request_id}#{i}", e if isinstance(e, dict) else Unreadable("an event must be a JSON object"))
            for i, e in enumerate(events, 1)]
