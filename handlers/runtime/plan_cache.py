"""A per-user cache of validated plans, so ``agglo run`` and ``agglo serve`` start without pydantic.

Like Python's ``__pycache__``: an entry is the compiled artefact's ``plan.json``
(``handlers.runtime.artefact``) for one config, written after that config validated,
and found again by a key made of the config's bytes (SHA-256), the IR version and
agglo's own code (the size and modification time of each of its source files, which
a new version, or an edit in a development checkout, changes). A cache hit is
therefore only possible for config bytes that this very agglo validated.

Where: ``$AGGLO_CACHE_DIR``, else ``$XDG_CACHE_HOME/agglo``, else ``~/.cache/agglo``
(``plans/`` in it); ``AGGLO_CACHE_DIR`` set but empty turns the cache off. An entry
is written to a temporary file and renamed over its name (atomic: concurrent runs
each write a whole entry, and a reader sees one whole entry or none), carries the
SHA-256 of its own body (a damaged one is never used: the config is validated
instead and the entry rewritten), and the directory keeps at most ``MAX_ENTRIES``
entries (the least recently used go). Entries hold the config's connection strings,
so the directory is the user's alone (0700, entries 0600), and a directory that is
not (another owner, writable by others) is not used at all. Nothing here ever
raises: a cache that cannot be read or written is a slower start, not a failure.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from collections.abc import Mapping, Sequence

from agglo_core.ir import IR_VERSION
from handlers.runtime.artefact import Artefact, parse_artefact

ENV = "AGGLO_CACHE_DIR"
SUBDIR = "plans"
MAX_ENTRIES = 128
"""Enough for every config a person runs; each entry is about the size of its config."""
MAGIC = b"agglo-plan-cache 1 "
"""An entry's first line: this, then the SHA-256 (hex) of the rest of the entry."""
_DIGEST_HEX = 64
_CODE_ROOTS = ("agglo_core", "handlers")
_VALIDATING_DEPENDENCIES = ("pydantic", "pydantic_core")
"""What validation runs besides agglo's code. (RE2 compiles every regex again from the IR at each start.)"""


def cache_dir(environ: Mapping[str, str] = os.environ) -> str | None:
    """The directory plans are cached in; None when ``AGGLO_CACHE_DIR`` is set to nothing (the cache is off)."""
    named = environ.get(ENV)
    if named is not None:
        return os.path.join(named, SUBDIR) if named else None
    base = environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "agglo", SUBDIR)


_code_stamp: str | None = None


def code_stamp() -> str:
    """What identifies the code that validates: the IR version, each of agglo's source files' path, size and
    mtime, and the installed pydantic's.

    ``__pycache__`` trusts a module's bytecode on the same evidence. A stat of every file (about three
    hundred) costs a millisecond or two; importing ``importlib.metadata`` for version strings would cost ten,
    and agglo's version does not change when a checkout's code does.
    """
    global _code_stamp
    if _code_stamp is None:
        root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        _code_stamp = stamp_of([os.path.join(root, package) for package in _CODE_ROOTS], _VALIDATING_DEPENDENCIES)
    return _code_stamp


def stamp_of(directories: Sequence[str], dependencies: Sequence[str] = ()) -> str:
    """A digest of the IR version and the path, size and mtime of each ``.py`` file under ``directories``
    and of each file (extension modules too) of each package in ``dependencies`` (found, not imported)."""
    h = hashlib.sha256(f"ir {IR_VERSION}\n".encode())
    for directory in directories:
        _stamp_tree(directory, h, (".py",))
    for package in dependencies:
        _stamp_tree(os.path.dirname(_origin(package)), h, (".py", ".so", ".pyd"))
    return h.hexdigest()


def _origin(package: str) -> str:
    import importlib.util

    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        spec = None
    return (spec.origin if spec is not None else None) or f"/nonexistent/{package}/__init__.py"


def _stamp_tree(directory: str, h: hashlib._Hash, suffixes: tuple[str, ...]) -> None:
    try:
        entries = sorted(os.scandir(directory), key=lambda e: e.name)
    except OSError:
        return
    for entry in entries:
        if entry.is_dir(follow_symlinks=False):
            if entry.name != "__pycache__":
                _stamp_tree(entry.path, h, suffixes)
        elif entry.name.endswith(suffixes):
            st = entry.stat()
            h.update(f"{entry.path}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())


def entry_path(directory: str, raw: bytes) -> str:
    """The entry for config bytes ``raw`` under this agglo's code."""
    key = hashlib.sha256(code_stamp().encode() + b"\0" + raw).hexdigest()
    return os.path.join(directory, key + ".json")


def _private(directory: str) -> bool:
    """Is ``directory`` this user's own, written by no one else? (Another user's entries must not be run.)"""
    try:
        st = os.stat(directory)
    except OSError:
        return False
    return st.st_uid == os.getuid() and not st.st_mode & 0o022


def load(raw: bytes, directory: str | None) -> Artefact | None:
    """The cached artefact for config bytes ``raw``, or None: no entry, or one that cannot be trusted."""
    if directory is None or not _private(directory):
        return None
    path = entry_path(directory, raw)
    try:
        with open(path, "rb") as f:
            entry = f.read()
    except OSError:
        return None
    head = len(MAGIC) + _DIGEST_HEX + 1
    body = entry[head:]
    if (entry[:len(MAGIC)] != MAGIC or entry[head - 1:head] != b"\n"
            or entry[len(MAGIC):head - 1] != hashlib.sha256(body).hexdigest().encode()):
        return None
    try:
        artefact = parse_artefact(raw, body, path)
    except Exception:  # StaleArtefact, or data no agglo wrote: a cache never stops a start
        return None
    with contextlib.suppress(OSError):
        os.utime(path)  # recently used: pruned last
    return artefact


def store(raw: bytes, plan_json: bytes, directory: str | None) -> None:
    """Cache ``plan_json`` (``artefact_data`` of a config that validated) for config bytes ``raw``."""
    if directory is None:
        return
    import tempfile  # here: a run that finds its plan writes nothing

    try:
        os.makedirs(directory, mode=0o700, exist_ok=True)
        if not _private(directory):
            return
        fd, tmp = tempfile.mkstemp(dir=directory, prefix=".tmp-", suffix=".json")  # mode 0600
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(MAGIC + hashlib.sha256(plan_json).hexdigest().encode() + b"\n" + plan_json)
            os.replace(tmp, entry_path(directory, raw))
        except BaseException:
            _unlink(tmp)
            raise
        prune(directory)
    except OSError:
        pass


def prune(directory: str, keep: int | None = None) -> None:
    """Delete all but the ``keep`` (``MAX_ENTRIES``) most recently used entries (temporary files a killed run
    left among them)."""
    keep = MAX_ENTRIES if keep is None else keep
    try:
        with os.scandir(directory) as it:
            entries = [(e.stat().st_mtime_ns, e.path) for e in it if e.name.endswith(".json")]
    except OSError:
        return
    if len(entries) <= keep:
        return
    entries.sort(reverse=True)
    for _, path in entries[keep:]:
        _unlink(path)


def _unlink(path: str) -> None:
    with contextlib.suppress(OSError):  # another run pruned it first
        os.unlink(path)
