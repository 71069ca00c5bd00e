"""Google Cloud payloads -> Records.

| trigger | record id | the event |
|---|---|---|
| Pub/Sub (CloudEvent ``messagePublished``, or a push subscription's envelope) | ``messageId`` | ``message.data`` (base64 JSON), with ``internal:pubsub`` = ``{"attributes", "orderingKey", "publishTime", "messageId"}`` |
| GCS (CloudEvent ``object.v1.finalized``) | ``bucket/name@generation#n`` | each JSON line or array element of the object |
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

import orjson

from handlers.sources import TriggerRecord, Unreadable

PUBSUB_PUBLISHED = "google.cloud.pubsub.topic.v1.messagePublished"
GCS_FINALIZED = "google.cloud.storage.object.v1.finalized"


def is_push_envelope(body: Any) -> bool:
    return isinstance(body, dict) and isinstance(body.get("message"), dict) and "subscription" in body


def pubsub_item(message: dict) -> TriggerRecord:
    """One Pub/Sub message (from a CloudEvent's data or a push envelope)."""
    rid = message.get("messageId") or message.get("message_id") or ""
    try:
        payload: Any = orjson.loads(base64.b64decode(message.get("data", ""), validate=True))
        if not isinstance(payload, dict):
            payload = Unreadable("the message data must be a JSON object")
    except (binascii.Error, ValueError) as e:
        payload = Unreadable(f"the message data is not base64 JSON: {e}")
    if isinstance(payload, dict):
        payload["internal:pubsub"] = {
            "attributes": message.get("attributes") or {}, "orderingKey": message.get("orderingKey", ""),
            "publishTime": message.get("publishTime") or message.get("publish_time"), "messageId": rid}
    return TriggerRecord(rid, payload, rid, message.get("orderingKey") or None)


def gcs_object(data: dict) -> tuple[str, str, str | None]:
    return data["bucket"], data["name"], str(data["generation"]) if data.get("generation") else None


def gcs_record_id(bucket: str, name: str, generation: str | None, n: int) -> str:
    return f"{bucket}/{name}@{generation or 'null'}#{n}"
