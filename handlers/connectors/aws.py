"""boto3 clients for the AWS connectors: created lazily, once per service/region/endpoint.

boto3 itself honours ``AWS_ENDPOINT_URL`` and ``AWS_ENDPOINT_URL_<SERVICE>``, so
the same code runs against moto or LocalStack; binge's ``endpoint=`` option in a
connection string overrides them for one external.
"""

from __future__ import annotations

import os
import threading
from functools import cache
from typing import Any

from agglo_core.connstr import parse_options
from handlers.connectors.base import BaseConnector
from handlers.connectors.spec import ClientLibrary, Option

_lock = threading.Lock()


@cache
def _session() -> Any:
    import boto3  # lazy: only adapters that use AWS pay for the import

    return boto3.session.Session()


@cache
def client(service: str, region: str | None = None, endpoint: str | None = None) -> Any:
    from botocore.config import Config

    with _lock:  # creating clients is not thread-safe; using them is
        return _session().client(
            service, region_name=region or None, endpoint_url=endpoint or None,
            config=Config(retries={"mode": "standard", "max_attempts": 5}, connect_timeout=5, read_timeout=30,
                          max_pool_connections=32))


def options(connection_string: str) -> dict[str, str]:
    """``scheme:a=b,c=d`` -> {"a": "b", "c": "d"}."""
    return parse_options(connection_string.split(":", 1)[1])


def endpoint_url(opts: dict[str, str]) -> str | None:
    """binge wrote endpoints without a scheme (``localhost:9000``); assume http there."""
    endpoint = opts.get("endpoint")
    if endpoint and "://" not in endpoint:
        endpoint = "http://" + endpoint
    return endpoint


def require_region(opts: dict[str, str], what: str) -> dict[str, str]:
    """``opts`` with the region their client will use, resolved once when the connector is built (without one
    boto3 would fail every record with ``NoRegionError`` instead of the start): their ``region=``; else
    boto3's own (``AWS_DEFAULT_REGION``, the profile's), left to boto3; else ``AWS_REGION``, which Lambda sets
    and boto3 does not read."""
    if opts.get("region") or _session().region_name:
        return opts
    if region := os.environ.get("AWS_REGION"):
        return {**opts, "region": region}
    raise ValueError(f"{what}: no AWS region is set: set AWS_REGION (or region=… in its connection string)")


def client_for(service: str, opts: dict[str, str]) -> Any:
    return client(service, opts.get("region"), endpoint_url(opts))


BOTO3 = ClientLibrary("boto3", "aws", "boto3>=1.34")

AWS_OPTIONS = (
    Option("region", metavar="R", doc="the region (default: the function's, or AWS_REGION)"),
    Option("endpoint", metavar="URL", doc="overrides AWS_ENDPOINT_URL for this external (moto, LocalStack)"),
)

REFUSED_CODES = frozenset({
    "ValidationException", "SerializationException", "InvalidParameterValue", "InvalidParameterCombination",
    "InvalidMessageContents", "InvalidArgumentException", "MessageTooLong", "EntityTooLarge", "KeyTooLongError",
    "InvalidRequest", "InvalidArgument",
})
"""Error codes with which an AWS service refuses the request's own content (retrying cannot help).

Everything else (throttling, 5xx, timeouts, a missing table or a denied permission, which an operator fixes)
is transient: the record is kept and retried."""


def error_code(err: Exception) -> str:
    return str(getattr(err, "response", {}).get("Error", {}).get("Code", ""))


class AwsConnector(BaseConnector):
    def is_transient(self, err: Exception) -> bool:
        return error_code(err) not in REFUSED_CODES and super().is_transient(err)
