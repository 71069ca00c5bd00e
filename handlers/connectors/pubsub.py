"""Google Cloud Pub/Sub as an output: ``pubsub:projects/P/topics/T`` (``ExternalPubSub``).

All messages of a batch are published at once (the client batches them) and
then awaited; a message Pub/Sub refuses fails only its record. The tee uuid
travels as the ``agglo-id`` attribute so subscribers can drop duplicates. An
event that came from Pub/Sub with an ordering key is published with the same
key, so order is kept end to end (the output subscription must enable ordering).
``PUBSUB_EMULATOR_HOST`` is honoured by the client library.
"""

from __future__ import annotations

from functools import cache
from typing import Any

import orjson

from agglo_core.config import External
from agglo_core.effects import EffectFailed, Put

ID_ATTRIBUTE = "agglo-id"


@cache
def publisher() -> Any:
    from google.cloud import pubsub_v1  # lazy: only the GCP adapter pays for it

    return pubsub_v1.PublisherClient(publisher_options=pubsub_v1.types.PublisherOptions(
        enable_message_ordering=True))


def ordering_key(body: dict) -> str:
    source = body.get("internal:pubsub")
    return source.get("orderingKey") or "" if isinstance(source, dict) else ""


class PubSubOutput:
    def __init__(self, topic: str) -> None:
        self.topic = topic

    def perform(self, effects: list[Any]) -> list[Any]:
        if not all(isinstance(e, Put) for e in effects):
            raise TypeError("a Pub/Sub topic can only receive messages")
        client = publisher()
        keys = [ordering_key(e.body) for e in effects]
        futures = [client.publish(self.topic, orjson.dumps(e.body), ordering_key=key, **{ID_ATTRIBUTE: e.key})
                   for e, key in zip(effects, keys, strict=True)]
        results: list[Any] = []
        for future, key in zip(futures, keys, strict=True):
            try:
                future.result(timeout=60)
                results.append(None)
            except Exception as err:  # this message only
                if key:
                    client.resume_publish(self.topic, key)  # an ordered key stops after a failure until resumed
                results.append(EffectFailed(f"Pub/Sub refused the message: {err}"))
        return results


def register(registry: Any) -> None:
    def build(ext: External) -> PubSubOutput:
        topic = ext.connectionString.split(":", 1)[1]
        if not topic.startswith("projects/") or "/topics/" not in topic:
            raise ValueError(f"external system '{ext.name}': pubsub needs projects/PROJECT/topics/TOPIC")
        return PubSubOutput(topic)

    registry.register("ExternalPubSub", "pubsub", build)
