"""Helpers for the end-to-end tests: the real ``agglo`` command, servers on free ports, plain HTTP."""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import pathlib
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from typing import Any

import orjson
from builders import PARTITION
from servers import free_port

AGGLO = [sys.executable, "-m", "handlers.local"]
# The console script installed next to the interpreter (the README's ``agglo``).
AGGLO_SCRIPT = [str(pathlib.Path(sys.executable).parent / "agglo")]

__all__ = ["AGGLO", "AGGLO_SCRIPT", "PARTITION", "Server", "free_port", "json_lines", "listening_addresses",
           "post_json", "request", "run_agglo", "write_config"]


def run_agglo(args: Sequence[str], cwd: pathlib.Path, stdin: bytes | None = None,
              env: dict[str, str] | None = None, timeout: float = 60,
              command: Sequence[str] = AGGLO) -> subprocess.CompletedProcess:
    """Run ``agglo ARGS`` in ``cwd`` and capture its output (bytes)."""
    full_env = {k: v for k, v in os.environ.items() if k != "AGGLO_ALLOW_EXEC"}
    full_env.update(env or {})
    return subprocess.run([*command, *args], cwd=cwd, input=stdin if stdin is not None else b"",
                          capture_output=True, env=full_env, timeout=timeout, check=False)


def json_lines(data: bytes | str) -> list[Any]:
    text = data.decode() if isinstance(data, bytes) else data
    # split("\n"), not splitlines(): a JSON string may hold U+0085 or U+2028, which splitlines() breaks on
    return [json.loads(line) for line in text.split("\n") if line.strip()]


def write_config(path: pathlib.Path, config: dict) -> pathlib.Path:
    path.write_text(json.dumps(config, indent=2))
    return path


def request(port: int, method: str, path: str, body: bytes | None = None,
            headers: dict[str, str] | None = None, timeout: float = 30,
            host: str = "127.0.0.1", chunked: bool = False) -> tuple[int, Any]:
    """One HTTP request on a fresh connection; (status, body parsed as JSON, or raw bytes if not JSON).

    ``chunked`` sends the body with ``Transfer-Encoding: chunked`` (no Content-Length), in 100-byte chunks.
    """
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        hdrs = {"Content-Type": "application/json", **(headers or {})}
        if chunked and body is not None:
            data = body
            conn.request(method, path, body=iter([data[i:i + 100] for i in range(0, len(data), 100)]),
                         headers=hdrs, encode_chunked=True)
        else:
            conn.request(method, path, body=body, headers=hdrs)
        resp = conn.getresponse()
        data = resp.read()
    finally:
        conn.close()
    try:
        return resp.status, orjson.loads(data)
    except orjson.JSONDecodeError:
        return resp.status, data


def post_json(port: int, event: Any, path: str = "/binge", **kw: Any) -> tuple[int, Any]:
    return request(port, "POST", path, orjson.dumps(event), **kw)


class Server:
    """``agglo serve`` in its own session (process group), so that killing it kills gunicorn's workers too."""

    def __init__(self, config: pathlib.Path, cwd: pathlib.Path, *extra: str, port: int | None = None,
                 log_name: str = "server") -> None:
        self.config, self.cwd, self.extra = config, cwd, list(extra)
        self.port = port or free_port()
        self.stdout_path = cwd / f"{log_name}.stdout"
        self.stderr_path = cwd / f"{log_name}.stderr"
        self.proc: subprocess.Popen | None = None

    @property
    def argv(self) -> list[str]:
        return [*AGGLO, "serve", "-c", str(self.config), "--port", str(self.port), *self.extra]

    def start(self, timeout: float = 30) -> Server:
        assert self.proc is None or self.proc.poll() is not None, "already running"
        env = {k: v for k, v in os.environ.items() if k != "AGGLO_ALLOW_EXEC"}
        with open(self.stdout_path, "ab") as out, open(self.stderr_path, "ab") as err:
            self.proc = subprocess.Popen(self.argv, cwd=self.cwd, stdout=out, stderr=err, stdin=subprocess.DEVNULL,
                                         env=env, start_new_session=True)
        self.wait_healthy(timeout)
        return self

    def wait_healthy(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise RuntimeError(f"agglo serve exited with {self.proc.returncode}: {self.logs()}")
            with contextlib.suppress(OSError, http.client.HTTPException):
                status, body = request(self.port, "GET", "/healthz", timeout=2)
                if status == 200 and body == {"status": "ok"}:
                    return
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"agglo serve did not answer /healthz within {timeout}s: {self.logs()}")

    def logs(self) -> str:
        parts = []
        for p in (self.stdout_path, self.stderr_path):
            if p.exists():
                parts.append(p.read_text(errors="replace")[-3000:])
        return "\n".join(parts)

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """Signal the whole process group (gunicorn's master and workers) and reap the master."""
        if self.proc is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, sig)
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=15)
        # Wait until no live process of the group is left (the workers are not our children).
        deadline = time.monotonic() + 15
        while group_alive(self.proc.pid) and time.monotonic() < deadline:
            time.sleep(0.02)

    def stop(self) -> None:
        self.kill(signal.SIGTERM)


def group_alive(pgid: int) -> bool:
    """Whether a process of group ``pgid`` is still running (zombies do not count)."""
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()
        if int(fields[2]) == pgid and fields[0] not in ("Z", "X"):
            return True
    return False


def listening_addresses(port: int) -> set[str]:
    """The IPv4 addresses a socket listens on at ``port`` (from /proc/net/tcp)."""
    found = set()
    with open("/proc/net/tcp") as f:
        next(f)
        for line in f:
            fields = line.split()
            local, state = fields[1], fields[3]
            addr_hex, port_hex = local.split(":")
            if state == "0A" and int(port_hex, 16) == port:
                found.add(socket.inet_ntoa(bytes.fromhex(addr_hex)[::-1]))
    return found
