"""Where a serverless function finds its pipeline config: ``AGGLO_CONFIG``.

A path (relative paths are looked up in the function's package first, then the
working directory), an ``s3://bucket/key`` URI, or a ``gs://bucket/object`` URI.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

ENV = "AGGLO_CONFIG"


MAX_CONFIG_BYTES = 16 << 20  # far beyond any real config; what is larger is a mistake (or an attack)


class ConfigSourceError(RuntimeError):
    pass


class ConfigTooLarge(ConfigSourceError):
    pass


def bounded_config(data: bytes, where: str) -> bytes:
    """``data`` (read with a limit of ``MAX_CONFIG_BYTES + 1``), or ConfigTooLarge if the config is larger."""
    if len(data) > MAX_CONFIG_BYTES:
        raise ConfigTooLarge(f"config {where} is larger than {MAX_CONFIG_BYTES >> 20} MiB: refused (is it the "
                             "right file?)")
    return data


def read_config_source(uri: str | None = None) -> bytes:
    uri = uri or os.environ.get(ENV, "")
    if not uri:
        raise ConfigSourceError(f"{ENV} is not set: give the path of a pipeline config, or an s3:// or gs:// URI")
    if uri.startswith("s3://"):
        from handlers.connectors.aws import client

        bucket, _, key = uri[5:].partition("/")
        body = client("s3").get_object(Bucket=bucket, Key=key)["Body"]
        return bounded_config(body.read(MAX_CONFIG_BYTES + 1), uri)
    if uri.startswith("gs://"):
        from handlers.connectors.gcs import storage_client

        bucket, _, name = uri[5:].partition("/")
        blob = storage_client().bucket(bucket).blob(name)
        return bounded_config(blob.download_as_bytes(start=0, end=MAX_CONFIG_BYTES), uri)  # end is inclusive
    path = local_config_path(uri)
    if path is not None:
        with open(path, "rb") as f:
            return bounded_config(f.read(MAX_CONFIG_BYTES + 1), path)
    raise ConfigSourceError(f"{ENV}={uri}: no such file (looked in {', '.join(_candidates(uri, os.environ))})")


def _candidates(uri: str, environ: Mapping[str, str]) -> list[str]:
    return [uri] if os.path.isabs(uri) else [os.path.join(environ.get("LAMBDA_TASK_ROOT", ""), uri), uri]


def local_config_path(uri: str, environ: Mapping[str, str] = os.environ) -> str | None:
    """The file a local ``AGGLO_CONFIG`` names (in the function's package first), or None (a URI, no file)."""
    if not uri or uri.startswith(("s3://", "gs://")):
        return None
    return next((path for path in _candidates(uri, environ) if os.path.isfile(path)), None)
