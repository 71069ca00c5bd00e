"""Where a ticker keeps its chain, keys and anchors: ``sqlite:PATH``, ``redis://…`` or ``dynamo:…``.

Every ticker request runs as one transaction over JSON values, so ticker
processes sharing a store never fork the chain: SQLite with ``BEGIN
IMMEDIATE``; Redis optimistically (``WATCH`` a version key, writes in
``MULTI``/``EXEC``, retried when another process wrote first); DynamoDB
optimistically too (``dynamo:tableName=T[,region=R][,endpoint=URL][,prefix=P]``,
the KV connector's connection string): strongly consistent reads after reading a
version item, the writes in one ``TransactWriteItems`` with a ``Put`` of the
version item conditional on the version read, retried when that condition fails.

The optimistic retries are bounded: at most ``CONTENDED_ATTEMPTS`` attempts, with
full-jitter backoff between them; past that the request is refused with a
``TickerError`` 503 (the ticker answers it with ``Retry-After``), never a loop.
"""

from __future__ import annotations

import os
import random
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any, TypeVar
from urllib.parse import parse_qs, urlsplit

import orjson

from agglo_core.entwine.ticker import TickerError
from handlers.runtime.settlement import RetryLimits, backoff_s

T = TypeVar("T")

CONTENDED_ATTEMPTS = 50
CONTENDED_BACKOFF_MS = 5
CONTENDED_LIMITS = RetryLimits(max_sleep_s=0.25)
"""Between optimistic attempts: full jitter from 5 ms doubling, each wait at most 250 ms."""


class Contention:
    """Bounded, jittered attempts of one optimistic transaction."""

    def __init__(self, sleep: Callable[[float], None] = time.sleep, rand: Callable[[], float] = random.random,
                 attempts: int = CONTENDED_ATTEMPTS) -> None:
        self.sleep, self.rand, self.attempts = sleep, rand, attempts

    def __call__(self, what: str) -> Iterator[int]:
        """Attempt numbers; raises ``TickerError`` 503 once they are used up."""
        for attempt in range(self.attempts):
            if attempt:
                self.sleep(backoff_s(attempt - 1, CONTENDED_BACKOFF_MS, None, CONTENDED_LIMITS, self.rand))
            yield attempt
        raise TickerError(503, f"{what}: still contended after {self.attempts} attempts (other ticker instances "
                               "keep writing first); try again shortly")


class _Overlay:
    """Reads through to the store, seeing this transaction's own writes first."""

    def __init__(self, read: Any) -> None:
        self._read = read
        self.writes: dict[str, Any] = {}

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

    def __init__(self, url: str, prefix: str = "ticker:", contention: Contention | None = None) -> None:
        try:
            import redis
        except ImportError:
            raise RuntimeError("a redis:// ticker state needs the redis package: pip install 'agglo[redis]'") \
                from None
        self._redis = redis
        self._client = redis.Redis.from_url(url, socket_timeout=30, socket_connect_timeout=5)
        self._prefix = prefix
        self._contention = contention or Contention()

    def run(self, fn: Callable[[_Overlay], T]) -> T:
        """``fn`` over the state, again if another process wrote in between; its writes commit atomically."""
        for _ in self._contention(f"redis ticker state {self._prefix!r}"):
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
        raise AssertionError("unreachable: the attempts end by raising")


MAX_DYNAMO_PROOF = 94
"""New messages in one anchor on a dynamo: state: with the tick, its uuid, the head, the substream's last
message and receipt, and the version item, a transaction's 100 items."""


class DynamoTickerState:
    """One item per key (partition key ``pk``, the value as JSON in ``json``) and a version item ``v``.

    Every commit moves the version, so a request that read version n and commits
    conditional on n saw no other commit in between: each read came after the
    version read and before the commit. A request that writes nothing checks the
    version once more instead, so its reads are consistent with each other too.
    """

    VERSION = "version"
    MAX_WRITES = 99  # a transaction holds at most 100 items: the version and 99 keys

    def __init__(self, opts: dict[str, str], contention: Contention | None = None) -> None:
        try:
            import boto3  # noqa: F401 -- only a dynamo: state needs it
        except ImportError:
            raise RuntimeError("a dynamo: ticker state needs boto3: pip install 'agglo[aws]'") from None
        self._table = opts["tableName"]
        self._prefix = opts.get("prefix", "ticker/")
        self._opts = opts
        self._contention = contention or Contention()

    @property
    def _client(self) -> Any:
        from handlers.connectors.aws import client_for

        return client_for("dynamodb", self._opts)

    def _item(self, key: str) -> dict:
        return self._client.get_item(TableName=self._table, Key={"pk": {"S": self._prefix + key}},
                                     ConsistentRead=True).get("Item", {})

    def _version(self) -> int | None:
        item = self._item(self.VERSION)
        return int(item["v"]["N"]) if item else None

    def _read(self, key: str) -> Any:
        item = self._item(key)
        return orjson.loads(item["json"]["S"]) if item else None

    def run(self, fn: Callable[[_Overlay], T]) -> T:
        """``fn`` over the state, again if another process committed in between; its writes commit atomically."""
        for _ in self._contention(f"dynamo: ticker state in {self._table!r}"):
            version = self._version()  # first: every later read is at least this new
            tx = _Overlay(self._read)
            result = fn(tx)
            if not tx.writes:
                if self._version() == version:
                    return result
                continue
            if len(tx.writes) > self.MAX_WRITES:
                raise TickerError(413, f"this request writes {len(tx.writes)} keys and a dynamo: ticker state "
                                       f"commits at most {self.MAX_WRITES} in one transaction (an anchor writes "
                                       "one per new message of its proof and 5 more: keep the substreams' "
                                       f"tickerInterval at most {MAX_DYNAMO_PROOF})")
            if self._commit(version, tx.writes):
                return result
        raise AssertionError("unreachable: the attempts end by raising")

    def _commit(self, version: int | None, writes: dict[str, Any]) -> bool:
        """The writes and the next version in one transaction; False if another commit came first."""
        put: dict[str, Any] = {
            "TableName": self._table,
            "Item": {"pk": {"S": self._prefix + self.VERSION}, "v": {"N": str((version or 0) + 1)}}}
        if version is None:
            put |= {"ConditionExpression": "attribute_not_exists(#k)", "ExpressionAttributeNames": {"#k": "pk"}}
        else:
            put |= {"ConditionExpression": "#v = :v", "ExpressionAttributeNames": {"#v": "v"},
                    "ExpressionAttributeValues": {":v": {"N": str(version)}}}
        items = [{"Put": put}, *({"Put": {"TableName": self._table, "Item": {
            "pk": {"S": self._prefix + k}, "json": {"S": orjson.dumps(v).decode()}}}} for k, v in writes.items())]
        try:
            # The token makes botocore's own retries of this call (after a lost answer) idempotent:
            # a transaction that went through is not refused as a conflict and run again.
            self._client.transact_write_items(TransactItems=items, ClientRequestToken=str(uuid.uuid4()))
        except Exception as err:
            reasons = getattr(err, "response", {}).get("CancellationReasons") or []
            if any(r.get("Code") in ("ConditionalCheckFailed", "TransactionConflict") for r in reasons):
                return False
            raise
        return True


def open_state(spec: str) -> Any:
    """The store a ``--state`` spec names; ``ValueError`` for one it does not know."""
    if spec.startswith("sqlite:") and len(spec) > 7:
        return SqliteTickerState(spec[7:])
    if spec.startswith(("redis://", "rediss://")):
        parts = urlsplit(spec)
        prefix = parse_qs(parts.query).get("prefix", ["ticker:"])[0]
        return RedisTickerState(parts._replace(query="").geturl(), prefix)
    if spec.startswith("dynamo:"):
        from handlers.connectors.aws import options

        opts = options(spec)
        if not opts.get("tableName"):
            raise ValueError(f"ticker state {spec!r}: dynamo: needs tableName=…")
        return DynamoTickerState(opts)
    raise ValueError(f"unknown ticker state {spec!r}: use sqlite:PATH, redis://host:port/db[?prefix=P] or "
                     "dynamo:tableName=T[,region=R][,endpoint=URL][,prefix=P]")
