"""Files on a local disk.

* ``ExternalLocalFile`` (binge's form: a directory path): one ``<uuid>.json`` file per tee.
* ``ExternalObjectStore`` ``file:DIR``: one file per object, named by its key.

Files are written to a temporary name and renamed, so a reader never sees half
a file and a redelivered record replaces its own file. Temporary files left by a
process that died mid-write are removed when the directory is next opened.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import threading
import time
from collections.abc import Iterator
from typing import Any

import orjson

from agglo_core.effects import Put
from agglo_core.ir import ExternalIR
from handlers.connectors.base import BaseConnector, Refused
from handlers.connectors.spec import ConnectorSpec, Option


def write_atomically(path: str, data: bytes) -> None:
    """``data`` to a temporary file beside ``path``, then renamed over it.

    The temporary name is this process's and thread's own with a counter: unique without
    ``mkstemp``'s random names and file object, which cost a fifth of a tee's write.
    """
    directory = os.path.dirname(path)
    while True:
        tmp = os.path.join(directory, f"{TMP_PREFIX}{os.getpid()}-{threading.get_ident()}-{next(_tmp_numbers)}")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            break
        except FileExistsError:  # left by a process that died with this pid: take the next number
            continue
    try:
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


_tmp_numbers = itertools.count()
TMP_PREFIX = ".tmp-"
STALE_TMP_S = 600


def remove_stale_temporaries(directory: str, older_than_s: float = STALE_TMP_S) -> int:
    """Delete temporary files a crashed writer left behind (old enough that no live writer owns them)."""
    removed, cutoff = 0, time.time() - older_than_s
    with os.scandir(directory) as entries:
        for entry in entries:
            if not entry.name.startswith(TMP_PREFIX):
                continue
            # Another instance may finish (rename) or remove the same file between listing and looking.
            with contextlib.suppress(FileNotFoundError):
                if entry.stat().st_mtime < cutoff:
                    os.unlink(entry.path)
                    removed += 1
    return removed


class DirectoryStore(BaseConnector):
    """Puts land in ``directory/<key><suffix>`` as JSON."""

    capabilities = frozenset({"Put"})

    def __init__(self, directory: str, suffix: str) -> None:
        self.directory = directory
        self.suffix = suffix
        os.makedirs(directory, exist_ok=True)
        remove_stale_temporaries(directory)

    def path_for(self, key: str) -> str:
        if "/" in key or key.startswith("."):
            raise Refused(f"unsafe object key {key!r}")
        return os.path.join(self.directory, key + self.suffix)

    def put(self, e: Put, body: bytes) -> None:
        write_atomically(self.path_for(e.key), body + b"\n")

    def get(self, key: str) -> Any:
        try:
            with open(self.path_for(key), "rb") as f:
                return orjson.loads(f.read())
        except FileNotFoundError:
            return None

    def scan(self, prefix: str = "") -> Iterator[tuple[str, Any]]:
        for name in sorted(os.listdir(self.directory)):
            if name.startswith(TMP_PREFIX) or not name.endswith(self.suffix):
                continue
            key = name[:len(name) - len(self.suffix)] if self.suffix else name
            if key.startswith(prefix):
                yield key, self.get(key)

    def describe(self) -> str:
        return f"directory {self.directory}"


def _local_dir(ext: ExternalIR, opts: dict[str, str]) -> DirectoryStore:
    return DirectoryStore(opts["directory"], ".json")


_DIRECTORY = Option("directory", required=True, metavar="DIR", doc="the directory the files go to")

SPECS = (
    ConnectorSpec("local files", ("", "file"), ("ExternalLocalFile",), DirectoryStore.capabilities,
                  None, "one `<uuid>.json` file per tee'd event", _local_dir, form="value",
                  options=(_DIRECTORY,)),
    ConnectorSpec("file object store", ("file",), ("ExternalObjectStore",), DirectoryStore.capabilities,
                  None, "one file per object, named by its key",
                  lambda ext, opts: DirectoryStore(opts["directory"], ""), form="value", options=(_DIRECTORY,)),
)
