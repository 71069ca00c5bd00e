"""Starting real servers for tests: free ports, waiting until they answer, killing them by PID."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(ready: Callable[[], bool], timeout_s: float, what: str, proc: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{what} exited with status {proc.returncode}")
        try:
            if ready():
                return
        except OSError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{what} did not come up within {timeout_s}s")


def port_open(port: int) -> bool:
    with socket.create_connection(("127.0.0.1", port), timeout=1):
        return True


def http_ok(url: str, any_status: bool = False) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:
            return 200 <= resp.status < 500
    except urllib.error.HTTPError as e:  # the server answers: with any_status, that is enough
        return any_status and e.code < 600


class Server:
    """A server process in its own session, so stopping it also stops its children."""

    def __init__(self, argv: list[str], ready_url: str | None = None, env: dict[str, str] | None = None,
                 timeout_s: float = 30, ready_status_any: bool = False,
                 cwd: str | os.PathLike | None = None, ready: Callable[[], bool] | None = None) -> None:
        """Start ``argv`` and wait until ``ready()`` (or an HTTP answer from ``ready_url``)."""
        self.output = tempfile.TemporaryFile()  # noqa: SIM115 - not a pipe: a chatty server must never block
        self.proc = subprocess.Popen(argv, env=env, stdout=self.output, stderr=subprocess.STDOUT,
                                     start_new_session=True, cwd=cwd)
        try:
            check = ready or (lambda: http_ok(ready_url, ready_status_any))  # type: ignore[arg-type]
            wait_until(check, timeout_s, " ".join(argv[:3]), self.proc)
        except RuntimeError:
            self.stop()
            raise

    def log(self) -> str:
        """What the server printed so far (for failure messages)."""
        self.output.seek(0)
        return self.output.read().decode(errors="replace")

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)
        self.output.close()


def start_function(source: str, target: str, env: dict[str, str], signature: str = "http",
                   cwd: str | os.PathLike | None = None) -> tuple[Server, str]:
    """functions-framework's real server for ``target`` in ``source``, on a free port."""
    import shutil
    import sys

    port = free_port()
    binary = shutil.which("functions-framework", path=os.path.dirname(sys.executable)) or "functions-framework"
    argv = [binary, "--target", target, "--source", source, "--signature-type", signature, "--host", "127.0.0.1",
            "--port", str(port)]
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    server = Server(argv, f"http://127.0.0.1:{port}/robots.txt", env={**os.environ, "PYTHONPATH": repo, **env},
                    ready_status_any=True, cwd=cwd)
    return server, f"http://127.0.0.1:{port}"


class JsonHook:
    """A real HTTP endpoint on 127.0.0.1 that records each JSON POST and answers with ``respond``.

    ``respond(hook, headers, body)`` returns (status, reply bytes); it runs after the request is
    recorded in ``hook.requests``.
    """

    def __init__(self, respond: Callable[[JsonHook, dict, dict], tuple[int, bytes]]) -> None:
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        self.requests: list[tuple[dict, dict]] = []
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                hook.requests.append((dict(self.headers), body))
                status, reply = respond(hook, dict(self.headers), body)
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@contextlib.contextmanager
def google_emulator(binary: str, name: str, args: Callable[[int], list[str]]) -> Iterator[str]:
    """``host:port`` of one of Google's emulators from the machine image; skips (naming it) where it is missing."""
    import pytest

    if not os.access(binary, os.X_OK):
        pytest.skip(f"Google's {name} emulator is not on this machine ({binary})")
    port = free_port()
    server = Server([binary, *args(port)], ready=lambda: port_open(port), timeout_s=60)
    try:
        yield f"127.0.0.1:{port}"
    finally:
        server.stop()
