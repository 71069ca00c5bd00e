"""``ExternalHttp`` (a URL): POST the body as JSON with ``Idempotency-Key`` set to the tee's uuid.

A 2xx answer with a JSON body becomes the tee's ``response``; any other status
fails the record (and is retried per the process's ``retryStrategy``).
"""

from __future__ import annotations

import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import orjson

from agglo_core.config import External
from agglo_core.connstr import redact
from agglo_core.effects import EffectFailed, Put

_MAX_RESPONSE = 1 << 20


class HttpTarget:
    def __init__(self, url: str, timeout_s: float = 30.0) -> None:
        self.url = url
        self.timeout_s = timeout_s
        self._shown = redact(url)

    def _post(self, e: Put) -> Any:
        request = urllib.request.Request(
            self.url, data=orjson.dumps(e.body), method="POST",
            headers={"Content-Type": "application/json", "Idempotency-Key": e.key, "User-Agent": "agglo"})
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as resp:
                body = resp.read(_MAX_RESPONSE)
        except urllib.error.HTTPError as err:
            detail = err.read(300).decode("utf-8", "replace")
            return EffectFailed(f"POST {self._shown} answered {err.code}: {detail}")
        except (urllib.error.URLError, OSError) as err:
            reason = getattr(err, "reason", err)
            return EffectFailed(f"POST {self._shown} failed: {reason}")
        if not body.strip():
            return None
        try:
            return orjson.loads(body)
        except orjson.JSONDecodeError:
            return None  # a 2xx without JSON (e.g. "OK") is still a success

    def perform(self, effects: list[Any]) -> list[Any]:
        if not all(isinstance(e, Put) for e in effects):
            raise TypeError("an HTTP endpoint can only receive POSTs")
        if len(effects) == 1:
            return [self._post(effects[0])]
        with ThreadPoolExecutor(max_workers=min(16, len(effects))) as pool:
            return list(pool.map(self._post, effects))


def register(registry: Any) -> None:
    def build(ext: External) -> HttpTarget:
        return HttpTarget(ext.connectionString)

    registry.register("ExternalHttp", "http", build)
    registry.register("ExternalHttp", "https", build)
