"""Running executables for spawners and exec transforms, only where the operator allows it.

An executable runs only if its resolved path is on the allow-list given with
``--allow-exec PATH`` or ``AGGLO_ALLOW_EXEC`` (paths separated by ``:`` or ``,``).
It gets its input as JSON on stdin and must print JSON (empty output means
null). A timeout, a non-zero exit or output that is not JSON fails the record,
with stderr in the message.

What runs is what was checked: a path is resolved once (``~``, relative to the
working directory, every symlink), that real path is checked against the
allow-list and opened without following a symlink; a binary runs from that open
file (``/proc/self/fd/N`` where there is one), a script by its real path (its
interpreter opens it by name). A bare name is never looked up in ``PATH``, and a
symlink swapped between the check and the run cannot redirect it.

Waited-for execs of one call run side by side (at most ``max_parallel`` at once),
except those sharing a lane (``Exec.lane``: one spawner stage's ``doSync``
spawns), which run one after another in the order given, so a spawner's side
effects happen in input order; lanes run beside each other.

Asynchronous spawns (``doSync: false``) run beside the batch, at most
``max_async`` at once: one more waits for a free slot (the batch is held back,
nothing is dropped). ``drain(deadline_s)`` waits for the ones still running and
returns how many failed; ``agglo run`` calls it before it exits (status 1 when
one failed). A spawn's ``delay_ms`` is capped at the exec timeout, so a config
cannot park a worker for longer than one run of the executable.

How a failure is classified: a timeout, or an executable that could not be
started (``OSError``: busy, out of processes, a mount gone), is *transient*: the
next delivery may succeed. A non-zero exit, output that is not JSON and an
executable that is not allowed are *permanent*: they come from what the record
gave it (or from the deployment), and the same input fails the same way.
"""

from __future__ import annotations

import logging
import os
import stat
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
MAX_ASYNC = 32
"""Asynchronous spawns running at once, by default; one more waits for a slot."""
_PROC_FD = "/proc/self/fd"


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


class Denied(Exception):
    """The executable may not run (not on the allow-list, or not the file that was checked)."""


class ExecRunner:
    def __init__(self, allowed: frozenset[str] = frozenset(), timeout_s: float = 30.0,
                 max_parallel: int = 8, max_async: int = MAX_ASYNC) -> None:
        self.allowed = allowed
        self.timeout_s = timeout_s
        self.max_parallel = max_parallel
        self.max_async = max_async
        self._slots = threading.BoundedSemaphore(max_async)
        self._lock = threading.Lock()
        self._running: set[threading.Thread] = set()
        self._failed: list[str] = []

    def _denial(self, path: str) -> str:
        return (f"executable '{path}' is not allowed; allow it with --allow-exec {path} "
                f"or {ENV_ALLOW}={path}")

    def _check(self, e: Exec) -> str | None:
        return None if is_allowed(e.path, self.allowed) else self._denial(e.path)

    def _open_checked(self, path: str) -> tuple[int, str]:
        """(an open descriptor of, real path) the allowed executable ``path`` names.

        Raises ``Denied`` when it is not allowed, ``OSError`` when it cannot be run (not there, not executable,
        or a symlink put where the real path was a moment ago).
        """
        real = _resolve(path)
        if real not in self.allowed:
            raise Denied(self._denial(path))
        # O_NOFOLLOW: the real path was just resolved; a symlink there now is a swap, refused.
        fd = os.open(real, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode) or not info.st_mode & 0o111:
            os.close(fd)
            raise PermissionError(13, "not an executable file")
        return fd, real

    def run(self, e: Exec) -> Any:
        try:
            fd, real = self._open_checked(e.path)
        except Denied as denied:
            return EffectFailed(str(denied), transient=False)
        except OSError as err:
            return EffectFailed(f"could not run '{e.path}': {err.strerror or err}")
        try:
            if e.delay_ms > 0:  # none for zero or less, as binge (its tests spawn with -1)
                time.sleep(min(e.delay_ms / 1000, self.timeout_s))  # capped: see the module's docstring
            return self._execute(e, fd, real)
        finally:
            os.close(fd)

    def _execute(self, e: Exec, fd: int, real: str) -> Any:
        # A binary runs from the open file itself (argv[0] keeps its real path). A script's interpreter
        # opens it by name, and scripts find their files from their own path: they run by the real path.
        via_fd = os.path.isdir(_PROC_FD) and os.pread(fd, 2, 0) != b"#!"
        try:
            proc = subprocess.run([real, *e.args], executable=f"{_PROC_FD}/{fd}" if via_fd else real,
                                  pass_fds=(fd,) if via_fd else (), input=orjson.dumps(e.input) + b"\n",
                                  capture_output=True, timeout=self.timeout_s, check=False)
        except subprocess.TimeoutExpired as err:
            return EffectFailed(f"'{e.path}' timed out after {self.timeout_s:g}s; stderr: {_tail(err.stderr)}")
        except OSError as err:
            return EffectFailed(f"could not run '{e.path}': {err.strerror or err}")
        if proc.returncode != 0:
            return EffectFailed(f"'{e.path}' exited with status {proc.returncode}; stderr: {_tail(proc.stderr)}",
                                transient=False)
        out = proc.stdout.strip()
        if not out:
            return None
        try:
            return orjson.loads(out)
        except orjson.JSONDecodeError:
            return EffectFailed(f"'{e.path}' printed something that is not JSON: {_tail(out)!r}; "
                                f"stderr: {_tail(proc.stderr)}", transient=False)

    def _spawn(self, e: Exec) -> None:
        """Run ``e`` beside the batch, once a slot is free (waiting for one holds the batch back)."""
        self._slots.acquire()

        def run() -> None:
            try:
                result = self.run(e)
                if isinstance(result, EffectFailed):
                    self._note_failure(result.message)
            except Exception as err:  # a spawn's thread must not die silently
                self._note_failure(f"'{e.path}': {err}")
            finally:
                with self._lock:
                    self._running.discard(threading.current_thread())
                self._slots.release()

        thread = threading.Thread(target=run, name="agglo-spawn", daemon=True)
        with self._lock:
            self._running.add(thread)
        thread.start()

    def _note_failure(self, message: str) -> None:
        log.warning("asynchronous spawn failed: %s", message)
        with self._lock:
            self._failed.append(message)

    def drain(self, deadline_s: float) -> int:
        """Wait up to ``deadline_s`` for the asynchronous spawns still running; how many failed since the last drain.

        One still running at the deadline counts as failed (and is logged): nothing is lost silently.
        """
        end = time.monotonic() + deadline_s
        with self._lock:
            running = list(self._running)
        for thread in running:
            thread.join(max(0.0, end - time.monotonic()))
        with self._lock:
            late = [t for t in self._running if t in running]
            failed, self._failed = self._failed, []
        for _ in late:
            log.warning("asynchronous spawn still running after %gs; not waited for", deadline_s)
        return len(failed) + len(late)

    def perform(self, effects: list[Exec]) -> list[Any]:
        results: list[Any] = [None] * len(effects)
        # What runs side by side: each waited-for exec alone, or a lane's execs one after another in order.
        runs: list[list[int]] = []
        lanes: dict[str, list[int]] = {}
        for i, e in enumerate(effects):
            if not e.wait:
                if (denied := self._check(e)) is not None:
                    log.warning("asynchronous spawn refused: %s", denied)
                else:
                    self._spawn(e)
            elif not e.lane:
                runs.append([i])
            elif (lane := lanes.get(e.lane)) is not None:
                lane.append(i)
            else:
                runs.append(lanes.setdefault(e.lane, [i]))

        def run_in_turn(run: list[int]) -> None:
            for i in run:
                results[i] = self.run(effects[i])

        if len(runs) == 1:
            run_in_turn(runs[0])
        elif runs:
            with ThreadPoolExecutor(max_workers=min(self.max_parallel, len(runs))) as pool:
                list(pool.map(run_in_turn, runs))  # waits for every run, raising what one raised
        return results


def _tail(data: bytes | str | None, limit: int = 500) -> str:
    if not data:
        return ""
    text = data.decode("utf-8", "replace") if isinstance(data, bytes) else data
    text = text.strip()
    return text if len(text) <= limit else "…" + text[-limit:]
