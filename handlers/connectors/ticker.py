"""Performs ``TickerCall`` effects: JSON over HTTP to an entwine ticker (stdlib only)."""

from __future__ import annotations

import urllib.error
import urllib.request
from typing import Any

import orjson

from agglo_core.connstr import redact_text
from agglo_core.effects import EffectFailed, TickerCall
from handlers.connectors.base import BaseConnector, status_is_permanent

TIMEOUT_S = 30


def base_url(endpoint: str) -> str:
    """binge's ``host:port`` or a full URL, without a trailing slash."""
    endpoint = endpoint.rstrip("/")
    return endpoint if "://" in endpoint else "http://" + endpoint


def call(endpoint: str, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    """(status, parsed JSON answer) of one request; connection failures raise ``OSError``."""
    data = None if body is None else orjson.dumps(body)
    request = urllib.request.Request(base_url(endpoint) + path, data=data, method=method,
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT_S) as response:
            status, raw = response.status, response.read()
    except urllib.error.HTTPError as e:
        status, raw = e.code, e.read()
    try:
        return status, orjson.loads(raw) if raw else None
    except orjson.JSONDecodeError:
        return status, {"error": raw[:200].decode(errors="replace")}


class TickerClient(BaseConnector):
    """Each call goes to the ticker its effect names (no external system, so no spec of options)."""

    capabilities = frozenset({"TickerCall"})

    def ticker_call(self, e: TickerCall) -> Any:
        try:
            status, answer = call(e.endpoint, e.method, e.path, e.body)
        except OSError as err:
            return EffectFailed(f"ticker {redact_text(e.endpoint)} unreachable: {redact_text(str(err))}", {"status": 0})
        if 200 <= status < 300:
            return answer
        reason = answer.get("error") if isinstance(answer, dict) else None
        return EffectFailed(f"HTTP {status}: {reason or answer}", {"status": status},
                            transient=not status_is_permanent(status))

    def describe(self) -> str:
        return "entwine ticker client"
