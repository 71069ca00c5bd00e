"""The HTTP/1.1 server under ``agglo serve``: slow clients cost a socket, never a worker thread.

Connections are read on an asyncio loop: a request's head and body must arrive
within ``read_timeout`` seconds in all (one deadline, so a client trickling a byte
a second cannot stretch it), and only a complete request is handed to the pool
of ``threads`` that run the WSGI application. An idle keep-alive connection is
closed after the same deadline, a client that does not read its answer after
``write_timeout``, and connections beyond ``max_connections`` are closed at once.
So a handful of idle or trickling sockets cannot keep ``/healthz`` or anyone else
waiting.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
import signal
import socket
import sys
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import unquote

log = logging.getLogger("agglo.serve")

WsgiApp = Callable[[dict, Callable[..., Any]], Iterable[bytes]]
MAX_HEAD = 16384
LINGER_S, LINGER_BYTES = 2.0, 16 << 20  # how long and how much a refused client may still send


class _Refused(Exception):
    """The request cannot be read; answer ``status`` with ``message`` and close the connection."""

    def __init__(self, status: str, message: str) -> None:
        super().__init__(message)
        self.status = status


class HttpServer:
    def __init__(self, app: WsgiApp, host: str, port: int, *, max_body: int, threads: int = 8,
                 read_timeout: float = 10.0, write_timeout: float = 30.0, max_connections: int = 1000) -> None:
        self.app, self.host, self.port, self.max_body = app, host, port, max_body
        self.threads, self.read_timeout, self.write_timeout = threads, read_timeout, write_timeout
        self.max_connections = max_connections
        self.sock: socket.socket | None = None
        self._open = 0

    def bind(self) -> None:
        """Listen on (host, port); raises ``OSError`` (busy port, bad address) before anything is served."""
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((self.host, self.port))
            sock.listen(1024)
        except BaseException:
            sock.close()
            raise
        sock.setblocking(False)
        self.sock = sock

    def serve_forever(self) -> None:
        """Serve until SIGTERM or SIGINT; requests being run are given a few seconds to finish."""
        asyncio.run(self._serve())

    async def _serve(self) -> None:
        assert self.sock is not None, "bind() first"
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        self._pool = ThreadPoolExecutor(self.threads, thread_name_prefix="agglo-http")
        self._tasks: set[asyncio.Task] = set()
        server = await asyncio.start_server(self._accept, sock=self.sock, limit=MAX_HEAD)
        try:
            await stop.wait()
        finally:
            server.close()
            busy = [t for t in self._tasks if getattr(t, "agglo_busy", False)]
            if busy:
                await asyncio.wait(busy, timeout=5)
            for t in self._tasks:
                t.cancel()
            self._pool.shutdown(wait=False, cancel_futures=True)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        if self._open >= self.max_connections:
            writer.close()
            return
        self._open += 1
        self._tasks.add(task)
        try:
            await self._connection(reader, writer, task)
        except (ConnectionError, TimeoutError, asyncio.IncompleteReadError):
            pass  # the client went away or was too slow: nothing to answer
        finally:
            self._open -= 1
            self._tasks.discard(task)
            writer.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(writer.wait_closed(), 1)

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                          task: asyncio.Task) -> None:
        peer = writer.get_extra_info("peername") or ("", 0)
        while True:
            head = None
            try:
                async with asyncio.timeout(self.read_timeout):
                    head = await self._read_head(reader)
                    if head is None:
                        return
                    method, target, version, headers = head
                    keep_alive = _keep_alive(version, headers)
                    body = await self._read_body(reader, writer, headers)
            except TimeoutError:
                if head is not None:  # an idle connection is closed without a word
                    await self._send(writer, "408 Request Timeout", _error(
                        f"the request did not arrive within {self.read_timeout:g}s"), keep_alive=False)
                return
            except _Refused as e:
                await self._send(writer, e.status, _error(str(e)), keep_alive=False)
                await _linger(reader, writer)
                return
            task.agglo_busy = True  # type: ignore[attr-defined]
            environ = self._environ(method, target, version, headers, body, peer)
            status, out_headers, data = await asyncio.get_running_loop().run_in_executor(
                self._pool, _call, self.app, environ)
            await self._send(writer, status, data, out_headers, keep_alive)
            task.agglo_busy = False  # type: ignore[attr-defined]
            if not keep_alive:
                return

    @staticmethod
    async def _read_head(reader: asyncio.StreamReader) -> tuple[str, str, str, dict[str, str]] | None:
        try:
            raw = await reader.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError as e:
            if e.partial.strip():
                raise _Refused("400 Bad Request", "incomplete request") from None
            return None  # closed between requests
        except asyncio.LimitOverrunError:
            raise _Refused("431 Request Header Fields Too Large",
                           f"request head larger than {MAX_HEAD} bytes") from None
        lines = raw.decode("latin-1").split("\r\n")
        while lines and not lines[0]:
            lines.pop(0)  # stray CRLFs between requests
        parts = lines[0].split(" ") if lines else []
        if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
            raise _Refused("400 Bad Request", "malformed request line")
        headers: dict[str, str] = {}
        for line in lines[1:]:
            if not line:
                continue
            name, sep, value = line.partition(":")
            if not sep or not name or name != name.strip():
                raise _Refused("400 Bad Request", "malformed header line")
            name, value = name.lower(), value.strip()
            headers[name] = f"{headers[name]}, {value}" if name in headers else value
        return parts[0], parts[1], parts[2], headers

    async def _read_body(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                         headers: dict[str, str]) -> bytes:
        too_large = _Refused("413 Content Too Large", f"body larger than {self.max_body} bytes")
        chunked = "chunked" in headers.get("transfer-encoding", "").lower()
        length = headers.get("content-length")
        if chunked and length is not None:
            raise _Refused("400 Bad Request", "both Content-Length and Transfer-Encoding")
        if length is not None:
            if not length.isdigit():
                raise _Refused("400 Bad Request", "bad Content-Length")
            if int(length) > self.max_body:
                raise too_large
        if (chunked or length) and headers.get("expect", "").lower() == "100-continue":
            writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        if length is not None:
            return await reader.readexactly(int(length))
        if not chunked:
            return b""
        parts: list[bytes] = []
        size = 0
        while True:
            line = await reader.readuntil(b"\r\n")
            try:
                n = int(line.split(b";")[0].strip(), 16)
            except ValueError:
                raise _Refused("400 Bad Request", "malformed chunk size") from None
            if n == 0:
                while (await reader.readuntil(b"\r\n")) != b"\r\n":
                    pass  # trailers: ignored
                return b"".join(parts)
            size += n
            if size > self.max_body:
                raise too_large
            parts.append(await reader.readexactly(n))
            if await reader.readexactly(2) != b"\r\n":
                raise _Refused("400 Bad Request", "malformed chunk")

    def _environ(self, method: str, target: str, version: str, headers: dict[str, str], body: bytes,
                 peer: tuple) -> dict:
        path, _, query = target.partition("?")
        environ = {
            "REQUEST_METHOD": method, "SCRIPT_NAME": "", "PATH_INFO": unquote(path, "latin-1"),
            "QUERY_STRING": query, "SERVER_NAME": self.host, "SERVER_PORT": str(self.port),
            "SERVER_PROTOCOL": version, "REMOTE_ADDR": str(peer[0]), "CONTENT_LENGTH": str(len(body)),
            "CONTENT_TYPE": headers.get("content-type", ""), "wsgi.version": (1, 0), "wsgi.url_scheme": "http",
            "wsgi.input": io.BytesIO(body), "wsgi.errors": sys.stderr, "wsgi.multithread": True,
            "wsgi.multiprocess": False, "wsgi.run_once": False,
        }
        for name, value in headers.items():
            if "_" not in name and name not in ("content-type", "content-length"):
                environ["HTTP_" + name.upper().replace("-", "_")] = value
        return environ

    async def _send(self, writer: asyncio.StreamWriter, status: str, data: bytes,
                    headers: list[tuple[str, str]] | None = None, keep_alive: bool = True) -> None:
        headers = [(k, v) for k, v in headers or [("Content-Type", "application/json")]
                   if k.lower() not in ("content-length", "connection")]
        lines = [f"HTTP/1.1 {status}", *(f"{k}: {v}" for k, v in headers), f"Content-Length: {len(data)}",
                 f"Connection: {'keep-alive' if keep_alive else 'close'}", "", ""]
        writer.write("\r\n".join(lines).encode("latin-1") + data)
        await asyncio.wait_for(writer.drain(), self.write_timeout)


async def _linger(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Read and drop what the client still sends, for a moment, before closing: closing with unread data
    resets the connection, and the client may lose the answer that says why."""
    with contextlib.suppress(Exception):
        if writer.can_write_eof():
            writer.write_eof()
        async with asyncio.timeout(LINGER_S):
            dropped = 0
            while dropped < LINGER_BYTES and (chunk := await reader.read(65536)):
                dropped += len(chunk)


def _keep_alive(version: str, headers: dict[str, str]) -> bool:
    connection = headers.get("connection", "").lower()
    return "keep-alive" in connection if version == "HTTP/1.0" else "close" not in connection


def _error(message: str) -> bytes:
    import orjson

    return orjson.dumps({"error": message})


def _call(app: WsgiApp, environ: dict) -> tuple[str, list[tuple[str, str]], bytes]:
    """Run the WSGI application in a pool thread; an unexpected failure is a 500, not a dead connection."""
    answer: list[Any] = []

    def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Callable:
        answer[:] = [status, headers]
        return lambda _data: None

    try:
        result = app(environ, start_response)
        try:
            data = b"".join(result)
        finally:
            close = getattr(result, "close", None)
            if close is not None:
                close()
    except Exception:
        log.exception("the request to %s failed", environ.get("PATH_INFO"))
        return "500 Internal Server Error", [("Content-Type", "application/json")], _error("internal error")
    return answer[0], answer[1], data
