"""``agglo serve``: binge's daemons over HTTP, on gunicorn.

* Stateless (default): ``POST <path>`` runs the event through every pipeline and
  answers 200 with the outputs, 400 for a body that is not a JSON object, 413
  for a body over ``--max-body``; a failed record is settled by
  ``handlers.runtime.settlement``: 422 with the errors when its own data is at
  fault (sending it again fails again), 503 with ``Retry-After`` when an outside
  system failed (send it again later, with the same ``Idempotency-Key``).
* Durable (``--durable DIR``): ``POST`` answers 202 once the event is committed
  to a SQLite queue in DIR; worker threads process and acknowledge queued
  events. Events claimed but not acknowledged when the daemon dies are claimed
  again on restart, so nothing acknowledged with 202 is lost.

Binds 127.0.0.1 unless told otherwise.
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import threading
from collections.abc import Callable, Iterable
from typing import Any

import orjson

from agglo_core import Record
from handlers.runtime.driver import Runtime
from handlers.runtime.settlement import RETRY_AFTER_S, SettlementPolicy, Trigger, http_status

log = logging.getLogger("agglo.serve")
JSON = [("Content-Type", "application/json")]
_STATUS = {200: "200 OK", 202: "202 Accepted", 400: "400 Bad Request", 403: "403 Forbidden", 404: "404 Not Found",
           405: "405 Method Not Allowed", 409: "409 Conflict", 411: "411 Length Required",
           413: "413 Content Too Large", 422: "422 Unprocessable Content", 500: "500 Internal Server Error",
           503: "503 Service Unavailable"}
StartResponse = Callable[[str, list[tuple[str, str]]], Any]


def answer(start: StartResponse, status: int, body: Any) -> Iterable[bytes]:
    """A JSON answer; every 503 says when to come back (``Retry-After``)."""
    data = orjson.dumps(body)
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


def record_id(environ: dict, body: bytes) -> str:
    """The client's ``Idempotency-Key``, else a hash of the body: the same POST twice is one record."""
    key = environ.get("HTTP_IDEMPOTENCY_KEY")
    return f"http:{key}" if key else "http:sha256:" + hashlib.sha256(body).hexdigest()


_HTTP_POLICY = SettlementPolicy(Trigger.HTTP)


class ServeApp:
    """The WSGI application of ``agglo serve``, shared by both modes."""

    def __init__(self, runtime: Runtime, path: str, max_body: int, queue: Any = None) -> None:
        self.runtime, self.path, self.max_body, self.queue = runtime, path, max_body, queue

    def __call__(self, environ: dict, start: StartResponse) -> Iterable[bytes]:
        method, path = environ["REQUEST_METHOD"], environ.get("PATH_INFO", "")
        if path == "/healthz":
            return answer(start, 200, {"status": "ok"})
        if path == "/maintenance/queue" and self.queue is not None:
            return answer(start, 200, self.queue.counts())
        if path != self.path:
            return answer(start, 404, {"error": f"no such path; POST events to {self.path}"})
        if method != "POST":
            return answer(start, 405, {"error": "use POST"})
        body = read_body(environ, self.max_body)
        if isinstance(body, int):
            return answer(start, body, {"error": f"body larger than {self.max_body} bytes"
                                         if body == 413 else "bad Content-Length"})
        try:
            event = orjson.loads(body)
        except orjson.JSONDecodeError as e:
            return answer(start, 400, {"error": f"body is not valid JSON: {e}"})
        if type(event) is not dict:
            return answer(start, 400, {"error": "body must be a JSON object"})
        rid = record_id(environ, body)
        if self.queue is not None:
            return answer(start, 202, {"queued": self.queue.put(rid, body)})
        [outcome] = self.runtime.process([Record(rid, event, source="http")])
        status = http_status(self.runtime.settle([outcome], _HTTP_POLICY))
        outputs = [e for _, e in outcome.outputs]
        if status == 200:
            return answer(start, 200, {"outputs": outputs})
        return answer(start, status, {"errors": [e.to_dict() for e in outcome.errors], "outputs": outputs})


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
    from handlers.runtime.boot import UsageError, build_runtime

    # Build once up front so a bad config or a busy queue fails before the server starts.
    build_runtime(args.config, args.allow_exec, args.exec_timeout)
    if args.durable:
        from handlers.daemons.queue import DurableQueue, QueueLocked

        try:
            DurableQueue(args.durable).close()
        except QueueLocked as e:
            raise UsageError(str(e)) from None

    def load() -> ServeApp:
        # In the worker process: connectors and queue workers belong to it.
        runtime = build_runtime(args.config, args.allow_exec, args.exec_timeout)
        queue = None
        if args.durable:
            from handlers.daemons.queue import DurableQueue

            queue = DurableQueue(args.durable)
            for i in range(max(1, args.workers)):
                threading.Thread(target=queue.work, args=(runtime,), name=f"agglo-queue-{i}", daemon=True).start()
        return ServeApp(runtime, args.path, args.max_body, queue)

    options = {
        "bind": f"{args.host}:{args.port}", "workers": 1, "worker_class": "gthread", "threads": 8,
        "accesslog": None, "errorlog": "-", "loglevel": "warning", "timeout": 120, "graceful_timeout": 5,
        "limit_request_field_size": 16384,
    }
    print(f"agglo: serving {args.config} on http://{args.host}:{args.port}{args.path}"
          f"{' (durable queue in ' + args.durable + ')' if args.durable else ''}", flush=True)
    gunicorn_app(load, options).run()
    return 0
