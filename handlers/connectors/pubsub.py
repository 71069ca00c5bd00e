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

from agglo_core.effects import EffectFailed
from handlers.connectors.base import BaseConnector, Work
from handlers.connectors.spec import ClientLibrary, ConnectorSpec, Option

ID_ATTRIBUTE = "agglo-id"


@cache
def publisher() -> Any:
    from google.cloud import pubsub_v1  # type: ignore[attr-defined]  # lazy: only the GCP adapter pays for it

    return pubsub_v1.PublisherClient(publisher_options=pubsub_v1.types.PublisherOptions(
        enable_message_ordering=True))


def ordering_key(body: dict) -> str:
    source = body.get("internal:pubsub")
    return source.get("orderingKey") or "" if isinstance(source, dict) else ""


class PubSubOutput(BaseConnector):
    capabilities = frozenset({"Put"})

    def __init__(self, topic: str) -> None:
        self.topic = topic

    def describe(self) -> str:
        return f"Pub/Sub topic {self.topic}"

    def perform_batch(self, works: list[Work]) -> list[Any]:
        client = publisher()
        keys = [ordering_key(w.effect.body) for w in works]
        futures = [client.publish(self.topic, w.data, ordering_key=key, **{ID_ATTRIBUTE: w.effect.key})
                   for w, key in zip(works, keys, strict=True)]
        results: list[Any] = []
        for future, key in zip(futures, keys, strict=True):
            try:
                future.result(timeout=60)
                results.append(None)
            except Exception as err:  # this message only
                if key:
                    client.resume_publish(self.topic, key)  # an ordered key stops after a failure until resumed
                results.append(EffectFailed(f"Pub/Sub refused the message: {err}", transient=self.is_transient(err)))
        return results


PUBSUB_CLIENT = ClientLibrary("google.cloud.pubsub_v1", "gcp", "google-cloud-pubsub>=2.20")

SPECS = (ConnectorSpec(
    "Pub/Sub", ("pubsub",), ("ExternalPubSub",), PubSubOutput.capabilities, PUBSUB_CLIENT,
    "all messages of a batch are published at once; the tee uuid travels as the `agglo-id` attribute and a "
    "Pub/Sub ordering key is kept", lambda ext, opts: PubSubOutput(opts["topic"]), form="value",
    options=(Option("topic", required=True, metavar="projects/P/topics/T", pattern=r"projects/[^/]+/topics/[^/]+",
                    doc="the topic"),)),)
