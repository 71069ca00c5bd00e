"""Running executables for spawners and exec transforms, only where the operator allows it.

An executable runs only if its resolved path is on the allow-list given with
``--allow-exec PATH`` or ``AGGLO_ALLOW_EXEC`` (paths separated by ``:`` or ``,``).
It gets its input as JSON on stdin and must print JSON (empty output means
null). A timeout, a non-zero exit or output that is not JSON fails the record,
with stderr in the message.

How a failure is classified: a timeout, or an executable that could not be
started (``OSError``: busy, out of processes, a mount gone), is *transient*: the
next delivery may succeed. A non-zero exit, output that is not JSON and an
executable that is not allowed are *permanent*: they come from what the record
gave it (or from the deployment), and the same input fails the same way.
"""

from __future__ import annotations

import logging
import os
import subprocess
import threading
import time
from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import orjson

from agglo_core.effects import EffectFailed, Exec

log = logging.getLogger("agglo.exec")
ENV_ALLOW = "AGGLO_ALLOW_EXEC"


def _resolve(path: str) -> str:
    return os.path.realpath(os.path.expanduser(path))


def allow_list_from(paths: Iterable[str] | None, env: Mapping[str, str] | None = None) -> frozenset[str]:
    environ: Mapping[str, str] = os.environ if env is None else env
    raw = list(paths or [])
    for part in environ.get(ENV_ALLOW, "").replace(",", ":").split(":"):
        if part.strip():
            raw.append(part.strip())
    return frozenset(_resolve(p) for p in raw)


def is_allowed(path: str, allowed: frozenset[str]) -> bool:
    return _resolve(path) in allowed


class ExecRunner:
    def __init__(self, allowed: frozenset[str] = frozenset(), timeout_s: float = 30.0,
                 max_parallel: int = 8) -> None:
        self.allowed = allowed
        self.timeout_s = timeout_s
        self.max_parallel = max_parallel

    def _check(self, e: Exec) -> str | None:
        if not is_allowed(e.path, self.allowed):
            return (f"executable '{e.path}' is not allowed; allow it with --allow-exec {e.path} "
                    f"or {ENV_ALLOW}={e.path}")
        return None

    def run(self, e: Exec) -> Any:
        denied = self._check(e)
        if denied:
            return EffectFailed(denied, transient=False)
        if e.delay_ms:
            time.sleep(e.delay_ms / 1000)
        try:
            proc = subprocess.run([e.path, *e.args], input=orjson.dumps(e.input) + b"\n", capture_output=True,
                                  timeout=self.timeout_s, check=False)
        except subprocess.TimeoutExpired as err:
            return EffectFailed(f"'{e.path}' timed out after {self.timeout_s:g}s; stderr: {_tail(err.stderr)}")
        except OSError as err:
            return EffectFailed(f"could not run '{e.path}': {err.strerror or err}")
        if proc.returncode != 0:
            return EffectFailed(f"'{e.path}' exited with status {proc.returncode}; stderr: {_tail(proc.stderr)}", transient=False)
        out = proc.stdout.strip()
        if not out:
            return None
        try:
            return orjson.loads(out)
        except orjson.JSONDecodeError:
            return EffectFailed(f"'{e.path}' printed something that is not JSON: {_tail(out)!r}; "
                                f"stderr: {_tail(proc.stderr)}", transient=False)

    def _fire_and_forget(self, e: Exec) -> None:
        def run() -> None:
            result = self.run(e)
            if isinstance(result, EffectFailed):
                log.warning("asynchronous spawn failed: %s", result.message)

        threading.Thread(target=run, name="agglo-spawn", daemon=True).start()

    def perform(self, effects: list[Exec]) -> list[Any]:
        results: list[Any] = [None] * len(effects)
        waiting = []
        for i, e in enumerate(effects):
            if e.wait:
                waiting.append(i)
            elif (denied := self._check(e)) is not None:
                log.warning("asynchronous spawn refused: %s", denied)
            else:
                self._fire_and_forget(e)
        if len(waiting) == 1:
            results[waiting[0]] = self.run(effects[waiting[0]])
        elif waiting:
            with ThreadPoolExecutor(max_workers=min(self.max_parallel, len(waiting))) as pool:
                for i, r in zip(waiting, pool.map(lambda i: self.run(effects[i]), waiting), strict=True):
                    results[i] = r
        return results


def _tail(data: bytes | str | None, limit: int = 500) -> str:
    if not data:
        return ""
    text = data.decode("utf-8", "replace") if isinstance(data, bytes) else data
    text = text.strip()
    return text if len(text) <= limit else "…" + text[-limit:]
