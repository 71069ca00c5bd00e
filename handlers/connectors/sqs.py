"""SQS as an output (``ExternalPubSub``): ``sqs:queueUrl=URL[,groupId=G][,region=R][,endpoint=URL]``.

Sent with ``SendMessageBatch`` (10 per call); an entry the queue refuses fails
only its record (permanently when SQS blames the entry's content). Each message
carries the tee uuid as the ``agglo-id`` attribute so consumers can drop duplicates; on a FIFO queue it is also the
``MessageDeduplicationId``, and ``groupId`` (default ``agglo``) the message group.
"""

from __future__ import annotations

from typing import Any

from agglo_core.effects import EffectFailed
from handlers.connectors.aws import AWS_OPTIONS, BOTO3, AwsConnector, client_for, require_region
from handlers.connectors.base import Work
from handlers.connectors.spec import ConnectorSpec, Option

ID_ATTRIBUTE = "agglo-id"


class SqsOutput(AwsConnector):
    capabilities = frozenset({"Put"})

    def __init__(self, opts: dict[str, str]) -> None:
        self.queue_url = opts["queueUrl"]
        self.fifo = self.queue_url.endswith(".fifo")
        self.group = opts.get("groupId", "agglo")
        self._opts = require_region(opts, self.describe())

    def describe(self) -> str:
        return f"SQS queue {self.queue_url}"

    def perform_batch(self, works: list[Work]) -> list[Any]:
        results: list[Any] = [None] * len(works)
        sqs = client_for("sqs", self._opts)
        for start in range(0, len(works), 10):
            entries = []
            for i, w in enumerate(works[start:start + 10], start):
                entry = {"Id": str(i), "MessageBody": w.data.decode(),
                         "MessageAttributes": {ID_ATTRIBUTE: {"DataType": "String", "StringValue": w.effect.key}}}
                if self.fifo:
                    entry["MessageGroupId"] = self.group
                    entry["MessageDeduplicationId"] = w.effect.key
                entries.append(entry)
            answer = sqs.send_message_batch(QueueUrl=self.queue_url, Entries=entries)
            for failure in answer.get("Failed", []):
                # SenderFault: SQS refuses this entry's content; otherwise SQS itself failed.
                results[int(failure["Id"])] = EffectFailed(
                    f"SQS refused the message: {failure.get('Code')}: {failure.get('Message', '')}",
                    transient=not failure.get("SenderFault", False))
        return results


SPECS = (ConnectorSpec(
    "SQS", ("sqs",), ("ExternalPubSub",), SqsOutput.capabilities, BOTO3,
    "`SendMessageBatch`; the tee uuid travels as the `agglo-id` message attribute (and as "
    "`MessageDeduplicationId`, with `groupId` as the group, on FIFO queues)", lambda ext, opts: SqsOutput(opts),
    options=(Option("queueUrl", required=True, metavar="URL", doc="the queue"),
             Option("groupId", metavar="G", default="agglo", doc="the message group on a FIFO queue"),
             *AWS_OPTIONS)),)
