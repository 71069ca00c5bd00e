"""The entwine ticker over HTTP: binge's REST paths, JSON bodies, one WSGI app.

The app runs under gunicorn (``agglo ticker serve``) and, unchanged, as a
function behind an HTTP trigger (``on_http`` for functions-framework / Cloud
Functions). Every request is one transaction on the ticker's state, so several
servers or function instances can share one store.

    POST /api/v1/tick                                   -> {"tickerMessage": …}
    POST /api/v1/register {subStreamID, publicKey}      -> {"subStreamID": …}
    GET  /api/v1/createGenesisProof/{subStreamID}       -> {"uuid": …, "message": …}
    GET  /api/v1/getProofStartUuid/{subStreamID}        -> {"uuid", "idx", "tickerUuid"}
    POST /api/v1/anchor {subStreamID, proof: [...]}     -> {"tickerMessage": receipt}
    GET  /api/v1/happenedBefore/{lhsSubStream}/{lhsUuid}/{lhsIdx}/{rhsSubStream}/{rhsUuid}/{rhsIdx}
                                                        -> {"happenedBefore", "order", "lhsWindow", "rhsWindow"}
    GET  /api/v1/publicKey                              -> {"publicKey": PEM}
    GET  /api/v1/ticks?from=N&to=M                      -> {"ticks": [...]} (at most 1000)
"""

from __future__ import annotations

import argparse
import logging
import os
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

import orjson

from agglo_core.entwine.crypto import Signer
from agglo_core.entwine.ticker import Ticker, TickerError
from handlers.daemons.serve import StartResponse, answer, read_body

log = logging.getLogger("agglo.ticker")
_KEY = "ticker-private-key"
MAX_TICKS = 1000


def _now_ms() -> int:
    return int(time.time() * 1000)


def ticker_signer(state: Any, key_path: str | None) -> Signer:
    """The ticker's key: ``key_path`` (PEM), else one made on first start and kept in the state."""
    if key_path:
        with open(key_path, "rb") as f:
            return Signer(f.read())
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ed25519

    fresh = ed25519.Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()).decode()

    def keep(tx: Any) -> str:
        pem = tx.get(_KEY)
        if pem is None:
            tx.put(_KEY, pem := fresh)
        return pem

    return Signer(state.run(keep).encode())


class TickerApp:
    def __init__(self, state: Any, signer: Signer, max_body: int = 16 << 20,
                 clock: Callable[[], int] = _now_ms) -> None:
        self.state, self.signer, self.max_body, self.clock = state, signer, max_body, clock

    def call(self, op: Callable[[Ticker], Any]) -> Any:
        return self.state.run(lambda tx: op(Ticker(tx, self.signer)))

    def tick(self) -> dict:
        now = self.clock()
        return self.call(lambda t: t.tick(now))

    def __call__(self, environ: dict, start: StartResponse) -> Iterable[bytes]:
        method, path = environ["REQUEST_METHOD"], environ.get("PATH_INFO", "")
        try:
            if path == "/healthz":
                return answer(start, 200, {"status": "ok"})
            if not path.startswith("/api/v1/"):
                return answer(start, 404, {"error": f"no such path {path}"})
            parts = path[len("/api/v1/"):].split("/")
            body: Any = None
            if method == "POST":
                raw = read_body(environ, self.max_body)
                if isinstance(raw, int):
                    return answer(start, raw, {"error": f"body larger than {self.max_body} bytes"
                                                if raw == 413 else "bad Content-Length"})
                try:
                    body = orjson.loads(raw) if raw else {}
                except orjson.JSONDecodeError as e:
                    return answer(start, 400, {"error": f"body is not valid JSON: {e}"})
                if type(body) is not dict:
                    return answer(start, 400, {"error": "body must be a JSON object"})
            return answer(start, 200, self._route(method, parts, body, environ))
        except TickerError as e:
            return answer(start, e.status, {"error": str(e)})

    def _route(self, method: str, parts: list[str], body: Any, environ: dict) -> Any:
        name, args = parts[0], parts[1:]
        now = self.clock()
        routes: dict[tuple[str, str, int], Callable[[], Any]] = {
            ("POST", "tick", 0): lambda: {"tickerMessage": self.tick()},
            ("POST", "register", 0): lambda: self._register(body),
            ("GET", "createGenesisProof", 1): lambda: self._genesis(args[0], now),
            ("GET", "getProofStartUuid", 1): lambda: self.call(lambda t: t.proof_start(args[0])),
            ("POST", "anchor", 0): lambda: {"tickerMessage": self.call(
                lambda t: t.anchor(body.get("subStreamID"), body.get("proof"), now))},
            ("GET", "happenedBefore", 6): lambda: self.call(lambda t: t.happened_before(
                (args[0], args[1], _index(args[2])), (args[3], args[4], _index(args[5])))),
            ("GET", "publicKey", 0): lambda: {"publicKey": self.signer.public_pem},
            ("GET", "ticks", 0): lambda: self._ticks(environ.get("QUERY_STRING", "")),
        }
        route = routes.get((method, name, len(args)))
        if route is None:
            if any(n == name and k == len(args) for _, n, k in routes):
                raise TickerError(405, f"{name}: wrong method {method}")
            raise TickerError(404, f"no such endpoint /api/v1/{'/'.join(parts)}")
        return route()

    def _register(self, body: dict[str, Any]) -> dict:
        # Any JSON may come in: the ticker checks both values and answers 400 for what it cannot take.
        sub_stream: Any = body.get("subStreamID")
        public_pem: Any = body.get("publicKey")
        self.call(lambda t: t.register(sub_stream, public_pem))
        return {"subStreamID": sub_stream}

    def _genesis(self, sub_stream: str, now: int) -> dict:
        message = self.call(lambda t: t.genesis(sub_stream, now))
        return {"uuid": message["uuid"], "message": message}

    def _ticks(self, query: str) -> dict:
        from urllib.parse import parse_qs

        q = parse_qs(query)
        first = _index(q.get("from", ["0"])[0])
        last = _index(q.get("to", [str(first + MAX_TICKS - 1)])[0])
        last = min(last, first + MAX_TICKS - 1)
        ticks = self.call(lambda t: [t.state.get(f"tick/{i}") for i in range(first, last + 1)])
        return {"ticks": [x for x in ticks if x is not None]}


def _index(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise TickerError(400, f"not an index: {text[:40]!r}") from None


def _ticking(app: TickerApp, interval_s: float, stop: threading.Event) -> None:
    while not stop.wait(interval_s):
        try:
            app.tick()
        except Exception as e:  # keep ticking through a passing store failure
            log.warning("tick failed: %s", e)


def build_app(state_spec: str, key_path: str | None = None, max_body: int = 16 << 20) -> TickerApp:
    from handlers.entwine.ticker_state import open_state

    state = open_state(state_spec)
    return TickerApp(state, ticker_signer(state, key_path), max_body)


def serve(args: argparse.Namespace) -> int:
    from handlers.daemons.serve import gunicorn_app
    from handlers.runtime.boot import UsageError

    try:
        build_app(args.state, args.key)  # fail before the server starts on a bad store or key
    except (ValueError, OSError) as e:
        raise UsageError(f"ticker: {e}") from None

    def load() -> TickerApp:
        app = build_app(args.state, args.key, args.max_body)
        app.tick()  # the chain starts (or goes on) when the server does
        if args.interval:
            threading.Thread(target=_ticking, args=(app, args.interval, threading.Event()),
                             name="agglo-ticker", daemon=True).start()
        return app

    options = {"bind": f"{args.host}:{args.port}", "workers": 1, "worker_class": "gthread", "threads": 8,
               "accesslog": None, "errorlog": "-", "loglevel": "warning", "timeout": 120, "graceful_timeout": 5}
    print(f"agglo: ticker on http://{args.host}:{args.port}/api/v1 (state {args.state})", flush=True)
    gunicorn_app(load, options).run()
    return 0


_function_app: TickerApp | None = None


def on_http(request: Any) -> Any:
    """Entry point for functions-framework / Cloud Functions (HTTP trigger).

    State from ``AGGLO_TICKER_STATE`` (``redis://…``, ``dynamo:tableName=T…`` or
    ``sqlite:PATH``, which only one instance may use); the key
    from ``AGGLO_TICKER_KEY`` (a PEM path), else kept in the state. Ticks come
    from a scheduler posting to ``/api/v1/tick``.
    """
    global _function_app
    if _function_app is None:
        _function_app = build_app(os.environ["AGGLO_TICKER_STATE"], os.environ.get("AGGLO_TICKER_KEY"))
    status_headers: list[Any] = []
    chunks = _function_app(request.environ, lambda status, headers: status_headers.extend((status, headers)))
    status, headers = status_headers
    return b"".join(chunks), int(status.split()[0]), headers
