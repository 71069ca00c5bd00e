"""S3 as an object store: ``s3:bucketName=B[,prefix=P][,region=R][,endpoint=URL]``.

Tee'd events are stored as JSON objects under ``<prefix><uuid>``. The same
module opens objects for the S3 event source, in ranged parts.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from typing import IO, Any

import orjson

from agglo_core.effects import Put
from handlers.connectors.aws import (
    AWS_OPTIONS,
    BOTO3,
    AwsConnector,
    client,
    client_for,
    error_code,
    require_region,
)
from handlers.connectors.spec import ConnectorSpec, Option


class S3ObjectStore(AwsConnector):
    capabilities = frozenset({"Put"})

    def __init__(self, opts: dict[str, str], parallelism: int = 8) -> None:
        self.bucket = opts["bucketName"]
        self.prefix = opts.get("prefix", "")
        self._opts = require_region(opts, self.describe())
        self.concurrency = parallelism

    def put(self, e: Put, body: bytes) -> None:
        client_for("s3", self._opts).put_object(Bucket=self.bucket, Key=self.prefix + e.key, Body=body,
                                                ContentType="application/json")

    def get(self, key: str) -> Any:
        try:
            body = client_for("s3", self._opts).get_object(Bucket=self.bucket, Key=self.prefix + key)["Body"]
        except Exception as err:
            if error_code(err) in ("NoSuchKey", "404"):
                return None
            raise
        return orjson.loads(body.read())

    def scan(self, prefix: str = "") -> Iterator[tuple[str, Any]]:
        pages = client_for("s3", self._opts).get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=self.prefix + prefix)
        for page in pages:
            for entry in page.get("Contents", []):
                key = entry["Key"][len(self.prefix):]
                yield key, self.get(key)

    def describe(self) -> str:
        return f"S3 bucket {self.bucket}"


class _RangedObject(io.RawIOBase):
    """An S3 object read in ranged parts: memory stays bounded and no connection is held open
    while the records of a part are processed (however long that takes)."""

    def __init__(self, bucket: str, key: str, version: str | None, part_size: int) -> None:
        self._s3 = client("s3")
        self._where = {"Bucket": bucket, "Key": key, **({"VersionId": version} if version else {})}
        try:
            head = self._s3.head_object(**self._where)
        except Exception as err:
            status = getattr(err, "response", {}).get("ResponseMetadata", {}).get("HTTPStatusCode")
            if status in (403, 404):  # a HEAD answer has no body to say more
                raise FileNotFoundError(f"s3://{bucket}/{key}{f' (version {version})' if version else ''}: "
                                        f"no such object, or no permission to read it (HTTP {status})") from None
            raise
        self._size, self._etag = head["ContentLength"], head.get("ETag")
        self._part_size = part_size
        self._pos = 0
        self._part = b""
        self._offset = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        if self._offset >= len(self._part):
            if self._pos >= self._size:
                return 0
            end = min(self._pos + self._part_size, self._size) - 1
            extra = {"IfMatch": self._etag} if self._etag else {}  # the object must not change under us
            self._part = self._s3.get_object(Range=f"bytes={self._pos}-{end}", **self._where, **extra)["Body"].read()
            self._pos += len(self._part)
            self._offset = 0
        n = min(len(buffer), len(self._part) - self._offset)
        buffer[:n] = self._part[self._offset:self._offset + n]
        self._offset += n
        return n


def open_object(bucket: str, key: str, version: str | None = None, part_size: int = 8 << 20) -> IO[bytes]:
    """An S3 object as a buffered stream, fetched in parts as it is consumed."""
    return io.BufferedReader(_RangedObject(bucket, key, version, part_size), buffer_size=1 << 16)


SPECS = (ConnectorSpec(
    "S3", ("s3",), ("ExternalObjectStore",), S3ObjectStore.capabilities, BOTO3,
    "one JSON object per tee'd event at `<prefix><uuid>`", lambda ext, opts: S3ObjectStore(opts),
    options=(Option("bucketName", required=True, metavar="B", doc="the bucket"),
             Option("prefix", metavar="P", doc="prepended to every object key"), *AWS_OPTIONS)),)
