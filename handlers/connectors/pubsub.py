"""Google Cloud Pub/Sub as an output: ``pubsub:projects/P/topics/T`` (``ExternalPubSub``).

All messages of a batch are published at once (the client batches them) and
then awaited; a message Pub/Sub refuses fails only its record. The tee uuid
travels as the ``agglo-id`` attribute so subscribers can drop duplicates.
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

    return pubsub_v1.PublisherClient()


class PubSubOutput:
    def __init__(self, topic: str) -> None:
        self.topic = topic

    def perform(self, effects: list[Any]) -> list[Any]:
        if not all(isinstance(e, Put) for e in effects):
            raise TypeError("a Pub/Sub topic can only receive messages")
        client = publisher()
        futures = [client.publish(self.topic, orjson.dumps(e.body), **{ID_ATTRIBUTE: e.key}) for e in effects]
        results: list[Any] = []
        for future in futures:
            try:
                future.result(timeout=60)
                results.append(None)
            except Exception as err:  # this message only
                results.append(EffectFailed(f"Pub/Sub refused the message: {err}"))
        return results


def register(registry: Any) -> None:
    def build(ext: External) -> PubSubOutput:
        topic = ext.connectionString.split(":", 1)[1]
        if not topic.startswith("projects/") or "/topics/" not in topic:
            raise ValueError(f"external system '{ext.name}': pubsub needs projects/PROJECT/topics/TOPIC")
        return PubSubOutput(topic)

    registry.register("ExternalPubSub", "pubsub", build)
