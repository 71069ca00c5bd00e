"""S3 as an object store: ``s3:bucketName=B[,prefix=P][,region=R][,endpoint=URL]``.

Tee'd events are stored as JSON objects under ``<prefix><uuid>``. The same
module opens objects for the S3 event source, streaming them.
"""

from __future__ import annotations

import io
from concurrent.futures import ThreadPoolExecutor
from typing import IO, Any

import orjson

from agglo_core.config import External
from agglo_core.effects import Put
from handlers.connectors.aws import client, client_for, options


class S3ObjectStore:
    def __init__(self, opts: dict[str, str], parallelism: int = 8) -> None:
        self.bucket = opts["bucketName"]
        self.prefix = opts.get("prefix", "")
        self._opts = opts
        self._parallelism = parallelism

    def _put(self, e: Put) -> None:
        client_for("s3", self._opts).put_object(Bucket=self.bucket, Key=self.prefix + e.key,
                                                Body=orjson.dumps(e.body), ContentType="application/json")

    def perform(self, effects: list[Any]) -> list[Any]:
        if not all(isinstance(e, Put) for e in effects):
            raise TypeError("an object store can only store objects")
        if len(effects) == 1:
            self._put(effects[0])
        else:
            with ThreadPoolExecutor(max_workers=min(self._parallelism, len(effects))) as pool:
                list(pool.map(self._put, effects))
        return [None] * len(effects)

    def get(self, key: str) -> Any:
        body = client_for("s3", self._opts).get_object(Bucket=self.bucket, Key=self.prefix + key)["Body"]
        return orjson.loads(body.read())


class _Streaming(io.RawIOBase):
    """botocore's streaming body as a raw stream, so it can be buffered, peeked and gunzipped."""

    def __init__(self, body: Any) -> None:
        self._body = body

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        data = self._body.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def close(self) -> None:
        self._body.close()
        super().close()


def open_object(bucket: str, key: str, version: str | None = None) -> IO[bytes]:
    """An S3 object as a buffered stream, read as it is consumed rather than all at once."""
    extra = {"VersionId": version} if version else {}
    body = client("s3").get_object(Bucket=bucket, Key=key, **extra)["Body"]
    return io.BufferedReader(_Streaming(body), buffer_size=1 << 20)


def register(registry: Any) -> None:
    def build(ext: External) -> S3ObjectStore:
        opts = options(ext.connectionString)
        if not opts.get("bucketName"):
            raise ValueError(f"external system '{ext.name}': s3 needs bucketName=…")
        return S3ObjectStore(opts)

    registry.register("ExternalObjectStore", "s3", build)
