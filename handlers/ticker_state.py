"""Where a ticker keeps its chain, keys and anchors: ``sqlite:PATH`` or ``redis://…``.

Every ticker request runs as one transaction over JSON values, so ticker
processes sharing a store never fork the chain: SQLite with ``BEGIN
IMMEDIATE``; Redis optimistically (``WATCH`` a version key, writes in
``MULTI``/``EXEC``, retried when another process wrote first).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from typing import Any, TypeVar
from urllib.parse import parse_qs, urlsplit

import orjson

T = TypeVar("T")


class _Overlay:
    """Reads through to the store, seeing this transaction's own writes first."""

    def __init__(self, read: Any) -> None:
        self._read, self.writes = read, {}

    def get(self, key: str) -> Any:
        return self.writes[key] if key in self.writes else self._read(key)

    def put(self, key: str, value: Any) -> None:
        self.writes[key] = value


class SqliteTickerState:
    def __init__(self, path: str) -> None:
        from handlers.connectors.sqlite import connect

        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        self._conn = connect(path, synchronous="FULL")
        self._lock = threading.Lock()
        self._conn.execute("CREATE TABLE IF NOT EXISTS ticker (key TEXT PRIMARY KEY, value BLOB NOT NULL)")

    def _read(self, key: str) -> Any:
        row = self._conn.execute("SELECT value FROM ticker WHERE key = ?", (key,)).fetchone()
        return None if row is None else orjson.loads(row[0])

    def run(self, fn: Callable[[_Overlay], T]) -> T:
        """``fn`` over the state in one transaction; its writes are committed if it returns."""
        from handlers.connectors.sqlite import transaction

        with self._lock, transaction(self._conn):
            tx = _Overlay(self._read)
            result = fn(tx)
            self._conn.executemany("INSERT OR REPLACE INTO ticker (key, value) VALUES (?, ?)",
                                   [(k, orjson.dumps(v)) for k, v in tx.writes.items()])
            return result


class RedisTickerState:
    VERSION = "version"

    def __init__(self, url: str, prefix: str = "ticker:") -> None:
        try:
            import redis
        except ImportError:
            raise RuntimeError("a redis:// ticker state needs the redis package: pip install 'agglo[redis]'") \
                from None
        self._redis = redis
        self._client = redis.Redis.from_url(url, socket_timeout=30, socket_connect_timeout=5)
        self._prefix = prefix

    def run(self, fn: Callable[[_Overlay], T]) -> T:
        """``fn`` over the state, again if another process wrote in between; its writes commit atomically."""
        while True:
            with self._client.pipeline() as pipe:
                try:
                    pipe.watch(self._prefix + self.VERSION)

                    def read(key: str, pipe: Any = pipe) -> Any:
                        raw = pipe.get(self._prefix + key)
                        return None if raw is None else orjson.loads(raw)

                    tx = _Overlay(read)
                    result = fn(tx)
                    pipe.multi()
                    for k, v in tx.writes.items():
                        pipe.set(self._prefix + k, orjson.dumps(v))
                    pipe.incr(self._prefix + self.VERSION)
                    pipe.execute()
                    return result
                except self._redis.WatchError:
                    continue


def open_state(spec: str) -> Any:
    """The store a ``--state`` spec names; ``ValueError`` for one it does not know."""
    if spec.startswith("sqlite:") and len(spec) > 7:
        return SqliteTickerState(spec[7:])
    if spec.startswith(("redis://", "rediss://")):
        parts = urlsplit(spec)
        prefix = parse_qs(parts.query).get("prefix", ["ticker:"])[0]
        return RedisTickerState(parts._replace(query="").geturl(), prefix)
    raise ValueError(f"unknown ticker state {spec!r}: use sqlite:PATH or redis://host:port/db[?prefix=P] "
                     "(dynamo: is not offered for the ticker yet)")
