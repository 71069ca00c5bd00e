"""``agglo serve``: binge's daemons over HTTP.

* Stateless (default): ``POST <path>`` runs the event (a JSON object, or an array
  of them: one record each) through every pipeline and answers 200 with the
  outputs, 400 for a body that is not JSON, 413 for a body over ``--max-body``;
  a failed record is settled by ``handlers.runtime.settlement``: 422 with the
  errors when its own data is at fault (sending it again fails again), 503 with
  ``Retry-After`` when an outside system failed (send it again later, with the
  same ``Idempotency-Key``). Record ids and the key's 409 are
  ``handlers.sources.posted``'s.
* Durable (``--durable DIR``): ``POST`` answers 202 once the event is committed
  to a SQLite queue in DIR; worker threads process and acknowledge queued
  events. Events claimed but not acknowledged when the daemon dies are claimed
  again on restart, so nothing acknowledged with 202 is lost. A full queue, or
  one SQLite cannot write, is a 503: never a 202 for an event nobody will run.

Requests are read by ``handlers.daemons.httpd`` (a deadline per request, so slow
clients cannot hold the worker threads). Binds 127.0.0.1 unless told otherwise.
"""

from __future__ import annotations

import argparse
import logging
import sqlite3
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import parse_qs

import orjson

from handlers.runtime.driver import Runtime
from handlers.runtime.settlement import RETRY_AFTER_S, SettlementPolicy, Trigger
from handlers.sources.posted import (
    BadRequest,
    KeyConflict,
    KeyMemory,
    PostedEvent,
    accept,
    fingerprint,
    http_answer,
    parse_key,
    posted_events,
)

log = logging.getLogger("agglo.serve")
JSON = [("Content-Type", "application/json")]
_STATUS = {200: "200 OK", 202: "202 Accepted", 400: "400 Bad Request", 403: "403 Forbidden", 404: "404 Not Found",
           405: "405 Method Not Allowed", 409: "409 Conflict", 411: "411 Length Required",
           413: "413 Content Too Large", 422: "422 Unprocessable Content", 500: "500 Internal Server Error",
           503: "503 Service Unavailable"}
StartResponse = Callable[[str, list[tuple[str, str]]], Any]
MAX_LISTED_FAILURES = 1000


def answer(start: StartResponse, status: int, body: Any) -> Iterable[bytes]:
    """A JSON answer; every 503 says when to come back (``Retry-After``)."""
    try:
        data = orjson.dumps(body)
    except orjson.JSONEncodeError as e:  # http_answer checks each record; this is the last line of defence
        status, data = 422, orjson.dumps({"error": f"the answer cannot be serialised as JSON: {e}"})
    headers = [*JSON, ("Content-Length", str(len(data)))]
    if status == 503:
        headers.append(("Retry-After", str(RETRY_AFTER_S)))
    start(_STATUS[status], headers)
    return [data]


def read_body(environ: dict, max_body: int) -> bytes | int:
    """The request body, or an HTTP status if it is too large."""
    length = environ.get("CONTENT_LENGTH") or ""
    stream = environ["wsgi.input"]
    if length:
        try:
            n = int(length)
        except ValueError:
            return 400
        if n > max_body:
            return 413
        return stream.read(n)
    data = stream.read(max_body + 1)
    return 413 if len(data) > max_body else data


_HTTP_POLICY = SettlementPolicy(Trigger.HTTP)


class ServeApp:
    """The WSGI application of ``agglo serve``, shared by both modes."""

    def __init__(self, runtime: Runtime, path: str, max_body: int, queue: Any = None,
                 keys: KeyMemory | None = None) -> None:
        self.runtime, self.path, self.max_body, self.queue = runtime, path, max_body, queue
        self.keys = keys or KeyMemory()

    def __call__(self, environ: dict, start: StartResponse) -> Iterable[bytes]:
        method, path = environ["REQUEST_METHOD"], environ.get("PATH_INFO", "")
        if path == "/healthz":
            problem = self.queue.health() if self.queue is not None else None
            if problem:
                return answer(start, 503, {"status": "unhealthy", "error": problem})
            return answer(start, 200, {"status": "ok"})
        if path.startswith("/maintenance/") and self.queue is not None:
            return self.maintenance(method, path, environ, start)
        if path != self.path:
            return answer(start, 404, {"error": f"no such path; POST events to {self.path}"})
        if method != "POST":
            return answer(start, 405, {"error": "use POST"})
        body = read_body(environ, self.max_body)
        if isinstance(body, int):
            return answer(start, body, {"error": f"body larger than {self.max_body} bytes"
                                         if body == 413 else "bad Content-Length"})
        try:
            if self.queue is not None:  # the queue remembers keys itself, across restarts
                key = parse_key(environ.get("HTTP_IDEMPOTENCY_KEY"))
                events, array = posted_events(body, key)
                return self.enqueue(start, events, array, key, body)
            events, array = accept(body, environ.get("HTTP_IDEMPOTENCY_KEY"), self.keys)
        except BadRequest as e:
            return answer(start, 400, {"error": str(e)})
        except KeyConflict as e:
            return answer(start, 409, {"error": str(e)})
        outcomes = self.runtime.process([e.item.record("http") for e in events])
        status, result = http_answer(outcomes, self.runtime.settle(outcomes, _HTTP_POLICY), array)
        return answer(start, status, result)

    def enqueue(self, start: StartResponse, events: list[PostedEvent], array: bool, key: str | None,
                body: bytes) -> Iterable[bytes]:
        """Commit the events that can be queued; 202 with their queue ids, each refused one named."""
        from handlers.daemons.queue import QueueFull

        problem = self.queue.health()
        if problem:  # no 202 while the workers cannot make progress: the client keeps the event and comes back
            return answer(start, 503, {"error": f"the daemon cannot process events now: {problem}"})
        takeable = [(e.item.id, e.body) for e in events if e.body is not None]
        try:
            ids = iter(self.queue.put_many(takeable, key, fingerprint(body)) if takeable else [])
        except QueueFull as e:
            return answer(start, 503, {"error": f"{e}; send it again later"})
        except sqlite3.Error as e:
            log.error("cannot queue an event: %s", e)
            return answer(start, 503, {"error": f"the queue cannot take events now: {e}"})
        results = [{"id": e.item.id, "queued": next(ids)} if e.body is not None
                   else {"id": e.item.id, "error": e.item.payload.message} for e in events]
        status = 202 if takeable else 422
        if array:
            return answer(start, status, {"queued": [r["queued"] for r in results if "queued" in r],
                                          "results": results})
        [result] = results
        return answer(start, status, {"queued": result["queued"]} if "queued" in result else
                      {"errors": [{"record": result["id"], "error": result["error"]}]})

    def maintenance(self, method: str, path: str, environ: dict, start: StartResponse) -> Iterable[bytes]:
        """The durable queue's view: its counts, its failed records, and replaying them."""
        query = parse_qs(environ.get("QUERY_STRING", ""))
        try:
            if path == "/maintenance/queue" and method == "GET":
                return answer(start, 200, self.queue.counts())
            if path == "/maintenance/failed" and method == "GET":
                limit = _whole(query.get("limit", [str(MAX_LISTED_FAILURES)])[-1])
                return answer(start, 200, {"failed": self.queue.failed_records(min(limit, MAX_LISTED_FAILURES))})
            if path == "/maintenance/failed/replay" and method == "POST":
                ids = [_whole(i) for i in query["id"]] if "id" in query else None
                return answer(start, 200, {"replayed": self.queue.replay_failed(ids)})
        except ValueError as e:
            return answer(start, 400, {"error": str(e)})
        except sqlite3.Error as e:
            return answer(start, 503, {"error": f"the queue's database fails: {e}"})
        if path in ("/maintenance/queue", "/maintenance/failed", "/maintenance/failed/replay"):
            return answer(start, 405, {"error": "use GET (POST to /maintenance/failed/replay)"})
        return answer(start, 404, {"error": "no such maintenance path"})


def _whole(text: str) -> int:
    if not text.isdigit():
        raise ValueError(f"expected a whole number, got {text!r}")
    return int(text)


def gunicorn_app(load: Callable[[], Any], options: dict) -> Any:
    try:
        from gunicorn.app.base import BaseApplication
    except ImportError:
        raise SystemExit("agglo serve needs gunicorn: pip install 'agglo[serve]'") from None

    class _Server(BaseApplication):
        def load_config(self) -> None:
            for key, value in options.items():
                self.cfg.set(key, value)

        def load(self) -> Any:
            return load()

    return _Server()


def main(args: argparse.Namespace) -> int:
    from handlers.daemons.httpd import HttpServer
    from handlers.runtime.boot import UsageError, build_runtime

    runtime = build_runtime(args.config, args.allow_exec, args.exec_timeout, cached=not args.no_cache)
    queue = None
    if args.durable:
        from handlers.daemons.queue import DurableQueue, QueueLocked

        try:
            # Held for the daemon's life: a second daemon on DIR fails here, whenever it starts.
            queue = DurableQueue(args.durable, max_events=args.queue_max)
        except QueueLocked as e:
            raise UsageError(str(e)) from None
        except (OSError, sqlite3.Error) as e:
            raise UsageError(f"cannot use the queue directory {args.durable}: {e}") from None
    server = HttpServer(ServeApp(runtime, args.path, args.max_body, queue), args.host, args.port,
                        max_body=args.max_body, read_timeout=args.read_timeout)
    try:
        server.bind()
    except (OSError, OverflowError) as e:
        raise UsageError(f"cannot listen on {args.host}:{args.port}: {getattr(e, 'strerror', None) or e}") from None
    if queue is not None:
        queue.start_workers(runtime, max(1, args.workers))
    print(f"agglo: serving {args.config} on http://{args.host}:{args.port}{args.path}"
          f"{' (durable queue in ' + args.durable + ')' if args.durable else ''}", flush=True)
    server.serve_forever()
    return 0
