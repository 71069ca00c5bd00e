"""Entwine in memory for tests: keys, and a world that answers the entwine stage's effects.

The world keeps key-value stores in a dict and answers ``TickerCall`` with the
core's own ``Ticker`` over another dict, routed as the HTTP server routes them.
"""

from __future__ import annotations

import contextlib
import functools
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from agglo_core.effects import CompareAndPut, Effect, EffectFailed, GetItems, Put, TickerCall
from agglo_core.entwine.crypto import Signer
from agglo_core.entwine.ticker import Ticker, TickerError


@functools.cache
def rsa_pem(fmt: str = "pkcs8", bits: int = 2048) -> bytes:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=bits)
    formats = {"pkcs8": serialization.PrivateFormat.PKCS8,
               "pkcs1": serialization.PrivateFormat.TraditionalOpenSSL}
    return key.private_bytes(serialization.Encoding.PEM, formats[fmt], serialization.NoEncryption())


def ed25519_pem() -> bytes:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ed25519

    return ed25519.Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())


class DictState(dict):
    def put(self, key: str, value: Any) -> None:
        self[key] = value


@dataclass
class EntwineWorld:
    kv: dict[tuple[str, str], Any] = field(default_factory=dict)
    ticker_state: DictState = field(default_factory=DictState)
    ticker_signer: Signer = field(default_factory=lambda: Signer(ed25519_pem()))
    now_ms: int = 1_700_000_000_000
    before_compare: Callable[[CompareAndPut], None] = lambda e: None
    calls: list[TickerCall] = field(default_factory=list)

    @property
    def ticker(self) -> Ticker:
        return Ticker(self.ticker_state, self.ticker_signer)

    def perform(self, effects: list[Effect]) -> list[Any]:
        return [self.one(e) for e in effects]

    def one(self, e: Effect) -> Any:
        if isinstance(e, Put):
            self.kv[(e.target, e.key)] = e.body
            return None
        if isinstance(e, GetItems):
            return tuple(self.kv.get((e.store, k)) for k in e.keys)
        if isinstance(e, CompareAndPut):
            self.before_compare(e)
            head = self.kv.get((e.store, e.key))
            if (head or {}).get("uuid") != e.expected or any((e.store, k) in self.kv for k in e.absent):
                return False
            for k, v in e.writes:
                self.kv[(e.store, k)] = v
            return True
        if isinstance(e, TickerCall):
            self.calls.append(e)
            try:
                return self.route(e)
            except TickerError as err:
                return EffectFailed(str(err), {"status": err.status})
        raise AssertionError(f"unexpected effect {e!r}")

    def route(self, e: TickerCall) -> Any:
        t, parts, body = self.ticker, e.path.split("/")[3:], e.body or {}
        if parts[0] == "register":
            t.register(body["subStreamID"], body["publicKey"])
            return {}
        if parts[0] == "createGenesisProof":
            message = t.genesis(parts[1], self.now_ms)
            return {"uuid": message["uuid"], "message": message}
        if parts[0] == "getProofStartUuid":
            return t.proof_start(parts[1])
        if parts[0] == "anchor":
            return {"tickerMessage": t.anchor(body["subStreamID"], body["proof"], self.now_ms)}
        raise AssertionError(f"unexpected ticker call {e.path}")

    def messages(self, store: str, sub_stream: str) -> list[dict]:
        head = self.kv[(store, f"entwine/{sub_stream}/head")]
        return [self.kv[(store, f"entwine/{sub_stream}/idx/{i}")] for i in range(head["idx"] + 1)]


@contextlib.contextmanager
def ticker_server(state_spec: str) -> Iterator[tuple[str, Any]]:
    """A real ticker over HTTP in a thread of this process: (its host:port, its app)."""
    from wsgiref.simple_server import WSGIRequestHandler, make_server

    from handlers.entwine.ticker import TickerApp, ticker_signer
    from handlers.entwine.ticker_state import open_state

    class Quiet(WSGIRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

    state = open_state(state_spec)
    app = TickerApp(state, ticker_signer(state, None))
    server = make_server("127.0.0.1", 0, app, handler_class=Quiet)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"127.0.0.1:{server.server_port}", app
    finally:
        server.shutdown()
        server.server_close()
