"""``agglo compile``: a config's compiled plan as generated Python (``--show``), or as an artefact (``-o DIR``).

The artefact is what a deployment carries beside the config (``handlers.runtime.artefact``
says how a function finds and checks it): ``plan.json`` (the validated config's IR as
plain data, the SHA-256 of the config's bytes, so a loader can tell it belongs to the
config it is given, and the private key files the plan needs) and ``plan.py`` (the
generated Python, as ``--show`` prints it, for people to read). The config is checked
as a function checks it (its connection strings against the connector specs); private
keys need not be on the machine that compiles (the function reads them when it starts):
the generated Python never holds a key, so an unread one is stood in for by a throwaway
key made here, which only builds the plan whose source is printed.
"""

from __future__ import annotations

import pathlib
import sys
from typing import TYPE_CHECKING, Any

from agglo_core import ConfigError, Plan, compile_plan
from agglo_core.ir import build_ir
from handlers.runtime.artefact import PLAN_FILE, SOURCE_FILE, artefact_data

if TYPE_CHECKING:
    from agglo_core.config import PipelinesConfig


def compiled(raw: bytes) -> tuple[PipelinesConfig, Plan, list[str]]:
    """The config checked as a function checks it, its plan, and a warning per private key that could not be
    read (stood in for: see the module's docstring). Raises ``ConfigError``."""
    from handlers.connectors.catalog import redact
    from handlers.runtime.entwine_keys import key_files, read_pem_keys, validate_source

    config, unread = validate_source(raw)
    keys, _ = read_pem_keys(config)
    return config, compile_plan(config, _with_stand_ins(keys, key_files(config)), redact=redact), unread


def main(args: Any) -> int:
    from handlers.runtime.boot import UsageError, read_config_file
    from handlers.runtime.entwine_keys import key_files

    if not args.show and args.output is None:
        raise UsageError("say what to do: --show prints the generated Python, -o DIR writes the artefact")
    raw = read_config_file(args.config)
    try:
        config, plan, unread = compiled(raw)
    except ConfigError as e:
        raise UsageError(f"{args.config}: {e}") from None
    for problem in unread:
        print(f"agglo compile: {args.config}: {problem}", file=sys.stderr)
    if args.show:
        sys.stdout.write(plan.source())
    if args.output is not None:
        out = pathlib.Path(args.output)
        try:
            out.mkdir(parents=True, exist_ok=True)
            (out / PLAN_FILE).write_bytes(artefact_data(raw, build_ir(config), tuple(key_files(config))))
            (out / SOURCE_FILE).write_text(plan.source(), encoding="utf-8")
        except OSError as e:
            raise UsageError(f"cannot write the artefact to {out}: {e.strerror or e}") from None
    return 0


def _with_stand_ins(keys: dict[str, bytes], files: list[tuple[str, str]]) -> dict[str, bytes]:
    """``keys`` with a throwaway Ed25519 key for each named file that could not be read (for the source only)."""
    missing = {path for _, path in files if path not in keys}
    if not missing:
        return keys
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ed25519

    stand_in = ed25519.Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    return {**keys, **dict.fromkeys(missing, stand_in)}
