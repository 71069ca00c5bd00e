"""The compiled artefact (``agglo compile -o DIR``): a validated config's plan, loaded without pydantic.

``DIR/plan.json`` holds the SHA-256 of the config's bytes, the IR (``agglo_core.ir``)
as plain data and the private key files its processes name; ``DIR/plan.py`` the
generated Python, for people to read (the plan is built from the IR; ``plan.py`` is
never executed, so a stale one cannot change what runs, and it is not compared).

A serverless function finds its artefact through ``AGGLO_PLAN`` (a directory;
relative paths are looked up as ``AGGLO_CONFIG``'s are), or, without it, beside a
local config: ``pipelines/basic.json`` -> ``pipelines/basic.plan/``.
``read_artefact`` refuses (``StaleArtefact``, saying why) an artefact that is missing,
unreadable, written for other config bytes or for another IR version; the caller
then validates the config in full.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass

from agglo_core.ir import PlanIR
from handlers.runtime.config_source import ENV as CONFIG_ENV
from handlers.runtime.config_source import local_config_path

ENV = "AGGLO_PLAN"
PLAN_FILE = "plan.json"
SOURCE_FILE = "plan.py"
SUFFIX = ".plan"
"""``X.json``'s artefact, when ``AGGLO_PLAN`` is not set, is the directory ``X.plan`` beside it."""


class StaleArtefact(Exception):
    """The artefact cannot stand for the config (the message says why): validate the config instead."""


@dataclass(frozen=True, slots=True)
class Artefact:
    ir: PlanIR
    key_files: tuple[tuple[str, str], ...]
    """(where the config names it, file) of each private key the plan needs (entwine's pemPath)."""


def config_sha256(raw: bytes) -> str:
    return hashlib.sha256(raw).hexdigest()


def artefact_data(raw: bytes, ir: PlanIR, key_files: tuple[tuple[str, str], ...]) -> bytes:
    """``plan.json``'s bytes for a config's bytes, its IR and its key files.

    The standard json module, as for the config itself: orjson refuses (writing) or rounds to a float
    (reading) an integer beyond 64 bits, which a config may hold."""
    return json.dumps({"configSha256": config_sha256(raw), "ir": ir.to_data(),
                       "keyFiles": [list(k) for k in key_files]}, indent=1, ensure_ascii=False).encode() + b"\n"


def artefact_dir(environ: Mapping[str, str] = os.environ) -> str | None:
    """The directory the function's artefact should be in; None when nothing names one (a config from s3://
    or gs:// without ``AGGLO_PLAN``)."""
    named = environ.get(ENV, "")
    if named:
        if os.path.isabs(named):
            return named
        for base in (environ.get("LAMBDA_TASK_ROOT", ""), ""):
            candidate = os.path.join(base, named)
            if os.path.isdir(candidate):
                return candidate
        return named
    config = local_config_path(environ.get(CONFIG_ENV, ""), environ)
    return None if config is None else beside(config)


def beside(config_path: str) -> str:
    """The artefact directory of the local config ``config_path``: ``X.json`` -> ``X.plan``."""
    stem, _ = os.path.splitext(config_path)
    return stem + SUFFIX


def read_artefact(raw: bytes, directory: str | None) -> Artefact:
    """The artefact in ``directory`` if it was compiled from exactly ``raw``; else ``StaleArtefact``."""
    if directory is None:
        raise StaleArtefact(f"no compiled plan: {CONFIG_ENV} is not a local file and {ENV} is not set")
    path = os.path.join(directory, PLAN_FILE)
    try:
        with open(path, "rb") as f:
            body = f.read()
    except FileNotFoundError:
        raise StaleArtefact(f"no compiled plan at {path} (agglo compile -c CONFIG -o {directory})") from None
    except OSError as e:
        raise StaleArtefact(f"cannot read the compiled plan {path}: {e.strerror or e}") from None
    return parse_artefact(raw, body, path)


def parse_artefact(raw: bytes, body: bytes, path: str = PLAN_FILE) -> Artefact:
    """The artefact ``plan.json`` (``body``, read from ``path``) holds, if it was compiled from exactly ``raw``."""
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError) as e:
        raise StaleArtefact(f"the compiled plan {path} is not valid JSON: {e}") from None
    if type(data) is not dict:
        raise StaleArtefact(f"the compiled plan {path} is not a JSON object")
    if data.get("configSha256") != config_sha256(raw):
        raise StaleArtefact(f"the compiled plan {path} was compiled from another config (its SHA-256 differs: "
                            "compile it again)")
    try:
        ir = PlanIR.from_data(data["ir"] if type(data.get("ir")) is dict else {})
        key_files = tuple(_key_file(entry) for entry in data["keyFiles"])
    except (ValueError, TypeError, KeyError) as e:
        raise StaleArtefact(f"the compiled plan {path} cannot be used by this agglo: {e}") from None
    return Artefact(ir, key_files)


def _key_file(entry: object) -> tuple[str, str]:
    if type(entry) is not list or len(entry) != 2 or not all(type(part) is str for part in entry):
        raise ValueError(f"keyFiles holds {entry!r}, not [JSON path, file]")
    return entry[0], entry[1]
