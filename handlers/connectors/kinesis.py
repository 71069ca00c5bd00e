"""Kinesis as an output (``ExternalPubSub``): ``kinesis:streamName=S[,region=R][,endpoint=URL]``.

Sent with ``PutRecords`` (500 per call); a record Kinesis refuses fails only its
event (and is retried per ``retryStrategy``). The data is the event as JSON; the
partition key is the tee uuid, which spreads events over shards and lets
consumers drop duplicates (Kinesis hands the partition key to every consumer).
"""

from __future__ import annotations

from typing import Any

import orjson

from agglo_core.effects import EffectFailed, Put
from handlers.connectors import options_factory
from handlers.connectors.aws import client_for


class KinesisOutput:
    def __init__(self, opts: dict[str, str]) -> None:
        self.stream = opts["streamName"]
        self._opts = opts

    def perform(self, effects: list[Any]) -> list[Any]:
        if not all(isinstance(e, Put) for e in effects):
            raise TypeError("a Kinesis stream can only receive records")
        results: list[Any] = [None] * len(effects)
        kinesis = client_for("kinesis", self._opts)
        for start in range(0, len(effects), 500):
            chunk = effects[start:start + 500]
            answer = kinesis.put_records(StreamName=self.stream, Records=[
                {"Data": orjson.dumps(e.body), "PartitionKey": e.key} for e in chunk])
            for i, entry in enumerate(answer["Records"], start):
                if "ErrorCode" in entry:
                    results[i] = EffectFailed(
                        f"Kinesis refused the record: {entry['ErrorCode']}: {entry.get('ErrorMessage', '')}")
        return results


def register(registry: Any) -> None:
    registry.register("ExternalPubSub", "kinesis", options_factory(KinesisOutput, "streamName"))
