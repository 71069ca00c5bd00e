"""Google Cloud Storage as an object store: ``gcs:bucketName=B[,prefix=P]``.

Tee'd events are JSON objects at ``<prefix><uuid>``. The same module opens
objects for the GCS event source; the client reads them in chunks (ranged
requests), so large objects are never held whole. ``STORAGE_EMULATOR_HOST`` is
honoured by the client library.
"""

from __future__ import annotations

from collections.abc import Iterator
from functools import cache
from typing import IO, Any

import orjson

from agglo_core.effects import Put
from handlers.connectors.base import BaseConnector
from handlers.connectors.spec import ClientLibrary, ConnectorSpec, Option


@cache
def storage_client() -> Any:
    from google.cloud import storage  # type: ignore[attr-defined]  # lazy: only the GCP adapter pays for it

    return storage.Client()


class GcsObjectStore(BaseConnector):
    capabilities = frozenset({"Put"})

    def __init__(self, opts: dict[str, str], parallelism: int = 8) -> None:
        self.bucket = opts["bucketName"]
        self.prefix = opts.get("prefix", "")
        self.concurrency = parallelism

    def put(self, e: Put, body: bytes) -> None:
        blob = storage_client().bucket(self.bucket).blob(self.prefix + e.key)
        blob.upload_from_string(body, content_type="application/json")

    def get(self, key: str) -> Any:
        blob = storage_client().bucket(self.bucket).blob(self.prefix + key)
        return orjson.loads(blob.download_as_bytes()) if blob.exists() else None

    def scan(self, prefix: str = "") -> Iterator[tuple[str, Any]]:
        for blob in storage_client().list_blobs(self.bucket, prefix=self.prefix + prefix):
            yield blob.name[len(self.prefix):], orjson.loads(blob.download_as_bytes())

    def describe(self) -> str:
        return f"GCS bucket {self.bucket}"


def open_object(bucket: str, name: str, generation: str | int | None = None) -> IO[bytes]:
    """A GCS object as a stream read in chunks; a given generation pins the version."""
    blob = storage_client().bucket(bucket).blob(name, generation=int(generation) if generation else None)
    return blob.open("rb", chunk_size=8 << 20)


GCS_CLIENT = ClientLibrary("google.cloud.storage", "gcp", "google-cloud-storage>=2.14")

SPECS = (ConnectorSpec(
    "Cloud Storage", ("gcs",), ("ExternalObjectStore",), GcsObjectStore.capabilities, GCS_CLIENT,
    "one JSON object per tee'd event at `<prefix><uuid>`", lambda ext, opts: GcsObjectStore(opts),
    options=(Option("bucketName", required=True, metavar="B", doc="the bucket"),
             Option("prefix", metavar="P", doc="prepended to every object name"))),)
