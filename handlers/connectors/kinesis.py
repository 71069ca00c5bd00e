"""Kinesis as an output (``ExternalPubSub``): ``kinesis:streamName=S[,region=R][,endpoint=URL]``.

Sent with ``PutRecords`` (500 per call); a record Kinesis refuses fails only its
event (and is retried per ``retryStrategy``). The data is the event as JSON; the
partition key is the tee uuid, which spreads events over shards and lets
consumers drop duplicates (Kinesis hands the partition key to every consumer).
"""

from __future__ import annotations

from typing import Any

from agglo_core.effects import EffectFailed
from handlers.connectors.aws import AWS_OPTIONS, BOTO3, AwsConnector, client_for, require_region
from handlers.connectors.base import Work
from handlers.connectors.spec import ConnectorSpec, Option


class KinesisOutput(AwsConnector):
    capabilities = frozenset({"Put"})

    def __init__(self, opts: dict[str, str]) -> None:
        self.stream = opts["streamName"]
        self._opts = require_region(opts, self.describe())

    def describe(self) -> str:
        return f"Kinesis stream {self.stream}"

    def perform_batch(self, works: list[Work]) -> list[Any]:
        results: list[Any] = [None] * len(works)
        kinesis = client_for("kinesis", self._opts)
        for start in range(0, len(works), 500):
            chunk = works[start:start + 500]
            answer = kinesis.put_records(StreamName=self.stream, Records=[
                {"Data": w.data, "PartitionKey": w.effect.key} for w in chunk])
            for i, entry in enumerate(answer["Records"], start):
                if "ErrorCode" in entry:  # throttled or an internal failure: both Kinesis's own
                    results[i] = EffectFailed(
                        f"Kinesis refused the record: {entry['ErrorCode']}: {entry.get('ErrorMessage', '')}")
        return results


SPECS = (ConnectorSpec(
    "Kinesis", ("kinesis",), ("ExternalPubSub",), KinesisOutput.capabilities, BOTO3,
    "`PutRecords`; data is the event, the partition key the tee uuid", lambda ext, opts: KinesisOutput(opts),
    options=(Option("streamName", required=True, metavar="S", doc="the stream"), *AWS_OPTIONS)),)
