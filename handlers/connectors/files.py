"""Files on a local disk.

* ``ExternalLocalFile`` (binge's form: a directory path): one ``<uuid>.json`` file per tee.
* ``ExternalObjectStore`` ``file:DIR``: one file per object, named by its key.

Files are written to a temporary name and renamed, so a reader never sees half
a file and a redelivered record replaces its own file. Temporary files left by a
process that died mid-write are removed when the directory is next opened.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import time
from typing import Any

import orjson

from agglo_core.config import External
from agglo_core.effects import Put


def write_atomically(path: str, data: bytes) -> None:
    directory = os.path.dirname(path)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=TMP_PREFIX)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


TMP_PREFIX = ".tmp-"
STALE_TMP_S = 600


def remove_stale_temporaries(directory: str, older_than_s: float = STALE_TMP_S) -> int:
    """Delete temporary files a crashed writer left behind (old enough that no live writer owns them)."""
    removed, cutoff = 0, time.time() - older_than_s
    with os.scandir(directory) as entries:
        for entry in entries:
            if entry.name.startswith(TMP_PREFIX) and entry.stat().st_mtime < cutoff:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(entry.path)
                    removed += 1
    return removed


class DirectoryStore:
    """Puts land in ``directory/<key><suffix>`` as JSON."""

    def __init__(self, directory: str, suffix: str) -> None:
        self.directory = directory
        self.suffix = suffix
        os.makedirs(directory, exist_ok=True)
        remove_stale_temporaries(directory)

    def path_for(self, key: str) -> str:
        if "/" in key or key.startswith("."):
            raise ValueError(f"unsafe object key {key!r}")
        return os.path.join(self.directory, key + self.suffix)

    def perform(self, effects: list[Any]) -> list[Any]:
        for e in effects:
            if not isinstance(e, Put):
                raise TypeError(f"a directory cannot perform {type(e).__name__}")
            write_atomically(self.path_for(e.key), orjson.dumps(e.body) + b"\n")
        return [None] * len(effects)

    def get(self, key: str) -> Any:
        with open(self.path_for(key), "rb") as f:
            return orjson.loads(f.read())


def register(registry: Any) -> None:
    def local_dir(ext: External) -> DirectoryStore:
        cs = ext.connectionString
        return DirectoryStore(cs[5:] if cs.startswith("file:") else cs, ".json")

    registry.register("ExternalLocalFile", "", local_dir)
    registry.register("ExternalLocalFile", "file", local_dir)
    registry.register("ExternalObjectStore", "file", lambda ext: DirectoryStore(ext.connectionString[5:], ""))
