"""Performs ``TickerCall`` effects: JSON over HTTP to an entwine ticker (stdlib only)."""

from __future__ import annotations

import urllib.error
import urllib.request
from typing import Any

import orjson

from agglo_core.effects import EffectFailed, TickerCall

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


class TickerClient:
    def perform(self, effects: list[TickerCall]) -> list[Any]:
        results: list[Any] = []
        for e in effects:
            try:
                status, answer = call(e.endpoint, e.method, e.path, e.body)
            except OSError as err:
                results.append(EffectFailed(f"ticker {e.endpoint} unreachable: {err}", {"status": 0}))
                continue
            if 200 <= status < 300:
                results.append(answer)
            else:
                reason = answer.get("error") if isinstance(answer, dict) else None
                results.append(EffectFailed(f"HTTP {status}: {reason or answer}", {"status": status}))
        return results
