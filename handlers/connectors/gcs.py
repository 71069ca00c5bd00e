"""Google Cloud Storage as an object store: ``gcs:bucketName=B[,prefix=P]``.

Tee'd events are JSON objects at ``<prefix><uuid>``. The same module opens
objects for the GCS event source; the client reads them in chunks (ranged
requests), so large objects are never held whole. ``STORAGE_EMULATOR_HOST`` is
honoured by the client library.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from functools import cache
from typing import IO, Any

import orjson

from agglo_core.effects import Put
from handlers.connectors import options_factory


@cache
def storage_client() -> Any:
    from google.cloud import storage  # lazy: only the GCP adapter pays for it

    return storage.Client()


class GcsObjectStore:
    def __init__(self, opts: dict[str, str], parallelism: int = 8) -> None:
        self.bucket = opts["bucketName"]
        self.prefix = opts.get("prefix", "")
        self._parallelism = parallelism

    def _put(self, e: Put) -> None:
        blob = storage_client().bucket(self.bucket).blob(self.prefix + e.key)
        blob.upload_from_string(orjson.dumps(e.body), content_type="application/json")

    def perform(self, effects: list[Any]) -> list[Any]:
        if not all(isinstance(e, Put) for e in effects):
            raise TypeError("an object store can only store objects")
        with ThreadPoolExecutor(max_workers=max(1, min(self._parallelism, len(effects)))) as pool:
            list(pool.map(self._put, effects))
        return [None] * len(effects)

    def get(self, key: str) -> Any:
        return orjson.loads(storage_client().bucket(self.bucket).blob(self.prefix + key).download_as_bytes())


def open_object(bucket: str, name: str, generation: str | int | None = None) -> IO[bytes]:
    """A GCS object as a stream read in chunks; a given generation pins the version."""
    blob = storage_client().bucket(bucket).blob(name, generation=int(generation) if generation else None)
    return blob.open("rb", chunk_size=8 << 20)


def register(registry: Any) -> None:
    registry.register("ExternalObjectStore", "gcs", options_factory(GcsObjectStore, "bucketName"))
