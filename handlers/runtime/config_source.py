"""Where a serverless function finds its pipeline config: ``AGGLO_CONFIG``.

A path (relative paths are looked up in the function's package first, then the
working directory), an ``s3://bucket/key`` URI, or a ``gs://bucket/object`` URI.
"""

from __future__ import annotations

import os

ENV = "AGGLO_CONFIG"


class ConfigSourceError(RuntimeError):
    pass


def read_config_source(uri: str | None = None) -> bytes:
    uri = uri or os.environ.get(ENV, "")
    if not uri:
        raise ConfigSourceError(f"{ENV} is not set: give the path of a pipeline config, or an s3:// or gs:// URI")
    if uri.startswith("s3://"):
        from handlers.connectors.aws import client

        bucket, _, key = uri[5:].partition("/")
        return client("s3").get_object(Bucket=bucket, Key=key)["Body"].read()
    if uri.startswith("gs://"):
        from handlers.connectors.gcs import storage_client

        bucket, _, name = uri[5:].partition("/")
        return storage_client().bucket(bucket).blob(name).download_as_bytes()
    candidates = [uri] if os.path.isabs(uri) else [
        os.path.join(os.environ.get("LAMBDA_TASK_ROOT", ""), uri), uri]
    for path in candidates:
        if os.path.isfile(path):
            with open(path, "rb") as f:
                return f.read()
    raise ConfigSourceError(f"{ENV}={uri}: no such file (looked in {', '.join(candidates)})")
