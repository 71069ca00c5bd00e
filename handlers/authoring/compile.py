"""``agglo compile``: a config's compiled plan as generated Python (``--show``), or as an artefact (``-o DIR``).

The artefact is what a deployment carries beside the config: ``plan.json`` (the
validated config's IR as plain data, with the SHA-256 of the config's bytes, so a
loader can tell it belongs to the config it is given) and ``plan.py`` (the
generated Python, as ``--show`` prints it).
"""

from __future__ import annotations

import hashlib
import pathlib
import sys
from typing import Any

import orjson

from agglo_core import ConfigError, compile_plan, load_config

ARTEFACT_PLAN = "plan.json"
ARTEFACT_SOURCE = "plan.py"


def main(args: Any) -> int:
    from handlers.runtime.boot import UsageError, read_config_file

    if not args.show and args.output is None:
        raise UsageError("say what to do: --show prints the generated Python, -o DIR writes the artefact")
    raw = read_config_file(args.config)
    try:
        plan = compile_plan(load_config(raw))
    except ConfigError as e:
        raise UsageError(f"{args.config}: {e}") from None
    if args.show:
        sys.stdout.write(plan.source())
    if args.output is not None:
        out = pathlib.Path(args.output)
        try:
            out.mkdir(parents=True, exist_ok=True)
            artefact = {"configSha256": hashlib.sha256(raw).hexdigest(), "ir": plan.ir.to_data()}
            (out / ARTEFACT_PLAN).write_bytes(orjson.dumps(artefact, option=orjson.OPT_INDENT_2) + b"\n")
            (out / ARTEFACT_SOURCE).write_text(plan.source(), encoding="utf-8")
        except OSError as e:
            raise UsageError(f"cannot write the artefact to {out}: {e.strerror or e}") from None
    return 0
