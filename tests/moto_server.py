"""moto's server, answering one request at a time.

moto applies a DynamoDB transaction's writes one by one and, when a condition
fails, puts back a copy of the whole table taken when the transaction began; with
requests served in parallel threads, that copy can undo another request's write,
or keep the half of a cancelled transaction that another one had already written.
Real DynamoDB transactions are atomic and isolated, and so is every request here.
"""

from __future__ import annotations

import threading
from typing import Any

from moto import server

_run_simple = server.run_simple
_lock = threading.Lock()


def _serialized(app: Any) -> Any:
    def application(environ: dict, start_response: Any) -> list[bytes]:
        with _lock:
            result = app(environ, start_response)
            try:
                return [b"".join(result)]
            finally:
                close = getattr(result, "close", None)
                if close is not None:
                    close()

    return application


def run_simple(host: str, port: int, app: Any, **options: Any) -> None:
    _run_simple(host, port, _serialized(app), **options)


if __name__ == "__main__":
    server.run_simple = run_simple
    server.main()
