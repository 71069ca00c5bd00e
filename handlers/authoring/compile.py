"""``agglo compile``: a config's compiled plan as generated Python (``--show``), or as an artefact (``-o DIR``).

The artefact is what a deployment carries beside the config (``handlers.runtime.artefact``
says how a function finds and checks it): ``plan.json`` (the validated config's IR as
plain data, the SHA-256 of the config's bytes, so a loader can tell it belongs to the
config it is given, and the private key files the plan needs) and ``plan.py`` (the
generated Python, as ``--show`` prints it, for people to read). The config is checked
as a function checks it (its connection strings against the connector specs); private
keys need not be on the machine that compiles (the function reads them when it starts),
but without them ``plan.py`` cannot be written.
"""

from __future__ import annotations

import pathlib
import sys
from typing import Any

from agglo_core import ConfigError, compile_plan
from agglo_core.ir import build_ir
from handlers.runtime.artefact import PLAN_FILE, SOURCE_FILE, artefact_data


def main(args: Any) -> int:
    from handlers.connectors.catalog import redact
    from handlers.runtime.boot import UsageError, read_config_file
    from handlers.runtime.entwine_keys import key_files, read_pem_keys, validate_source

    if not args.show and args.output is None:
        raise UsageError("say what to do: --show prints the generated Python, -o DIR writes the artefact")
    raw = read_config_file(args.config)
    try:
        config, unread = validate_source(raw)
        keys, _ = read_pem_keys(config)
        plan = None if unread else compile_plan(config, keys, redact=redact)
    except ConfigError as e:
        raise UsageError(f"{args.config}: {e}") from None
    for problem in unread:
        print(f"agglo compile: {args.config}: {problem}", file=sys.stderr)
    if args.show:
        if plan is None:
            raise UsageError(f"{args.config}: the generated Python needs the private keys the config names")
        sys.stdout.write(plan.source())
    if args.output is not None:
        out = pathlib.Path(args.output)
        try:
            out.mkdir(parents=True, exist_ok=True)
            (out / PLAN_FILE).write_bytes(artefact_data(raw, build_ir(config), tuple(key_files(config))))
            if plan is not None:
                (out / SOURCE_FILE).write_text(plan.source(), encoding="utf-8")
            else:
                (out / SOURCE_FILE).unlink(missing_ok=True)  # an older one would describe another config
        except OSError as e:
            raise UsageError(f"cannot write the artefact to {out}: {e.strerror or e}") from None
    return 0
