"""``ExternalHttp`` (a URL): POST the body as JSON with ``Idempotency-Key`` set to the tee's uuid.

A 2xx answer with a JSON body becomes the tee's ``response``. Any other answer
fails the record: a timeout, a refused connection, 408, 429 or a 5xx as
transient (retried per the process's ``retryStrategy``, then redelivered); any
other 4xx as permanent (the endpoint refuses the record itself).
"""

from __future__ import annotations

import urllib.error
import urllib.request
from typing import Any

import orjson

from agglo_core.effects import EffectFailed, Put
from handlers.connectors.base import BaseConnector, status_is_permanent
from handlers.connectors.spec import ConnectorSpec

_MAX_RESPONSE = 1 << 20


class HttpTarget(BaseConnector):
    capabilities = frozenset({"Put"})
    concurrency = 16

    def __init__(self, url: str, timeout_s: float = 30.0) -> None:
        from handlers.connectors.catalog import redact  # late: the catalog imports this module

        self.url = url
        self.timeout_s = timeout_s
        self._shown = redact(url)

    def put(self, e: Put, body: bytes) -> Any:
        request = urllib.request.Request(
            self.url, data=body, method="POST",
            headers={"Content-Type": "application/json", "Idempotency-Key": e.key, "User-Agent": "agglo"})
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as resp:
                answer = resp.read(_MAX_RESPONSE)
        except urllib.error.HTTPError as err:
            detail = err.read(300).decode("utf-8", "replace")
            return EffectFailed(f"POST {self._shown} answered {err.code}: {detail}", {"status": err.code},
                                transient=not status_is_permanent(err.code))
        except (urllib.error.URLError, OSError) as err:
            reason = getattr(err, "reason", err)
            return EffectFailed(f"POST {self._shown} failed: {reason}")
        if not answer.strip():
            return None
        try:
            return orjson.loads(answer)
        except orjson.JSONDecodeError:
            return None  # a 2xx without JSON (e.g. "OK") is still a success

    def describe(self) -> str:
        return f"POST {self._shown}"

    def __repr__(self) -> str:
        return f"HttpTarget({self._shown})"


SPECS = (ConnectorSpec(
    "HTTP", ("http", "https"), ("ExternalHttp",), HttpTarget.capabilities, ("local", "aws", "gcp"),
    "`POST` of the JSON body with `Idempotency-Key: <tee uuid>`; a 2xx JSON answer is kept as the tee's "
    "`response`; a timeout, 408, 429 or 5xx fails the record as transient, any other 4xx as permanent",
    lambda ext, opts: HttpTarget(ext.connectionString), form="url", query_passthrough=True, url_shape="…"),)
