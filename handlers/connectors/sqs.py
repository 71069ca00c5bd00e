"""SQS as an output (``ExternalPubSub``): ``sqs:queueUrl=URL[,groupId=G][,region=R][,endpoint=URL]``.

Sent with ``SendMessageBatch`` (10 per call); an entry the queue refuses fails
only its record. Each message carries the tee uuid as the ``agglo-id`` attribute
so consumers can drop duplicates; on a FIFO queue it is also the
``MessageDeduplicationId``, and ``groupId`` (default ``agglo``) the message group.
"""

from __future__ import annotations

from typing import Any

import orjson

from agglo_core.effects import EffectFailed, Put
from handlers.connectors import options_factory
from handlers.connectors.aws import client_for

ID_ATTRIBUTE = "agglo-id"


class SqsOutput:
    def __init__(self, opts: dict[str, str]) -> None:
        self.queue_url = opts["queueUrl"]
        self.fifo = self.queue_url.endswith(".fifo")
        self.group = opts.get("groupId", "agglo")
        self._opts = opts

    def perform(self, effects: list[Any]) -> list[Any]:
        if not all(isinstance(e, Put) for e in effects):
            raise TypeError("an SQS queue can only receive messages")
        results: list[Any] = [None] * len(effects)
        sqs = client_for("sqs", self._opts)
        for start in range(0, len(effects), 10):
            entries = []
            for i, e in enumerate(effects[start:start + 10], start):
                entry = {"Id": str(i), "MessageBody": orjson.dumps(e.body).decode(),
                         "MessageAttributes": {ID_ATTRIBUTE: {"DataType": "String", "StringValue": e.key}}}
                if self.fifo:
                    entry["MessageGroupId"] = self.group
                    entry["MessageDeduplicationId"] = e.key
                entries.append(entry)
            answer = sqs.send_message_batch(QueueUrl=self.queue_url, Entries=entries)
            for failure in answer.get("Failed", []):
                results[int(failure["Id"])] = EffectFailed(
                    f"SQS refused the message: {failure.get('Code')}: {failure.get('Message', '')}")
        return results


def register(registry: Any) -> None:
    registry.register("ExternalPubSub", "sqs", options_factory(SqsOutput, "queueUrl"))
