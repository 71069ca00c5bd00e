"""``agglo compile``: a config's compiled plan as generated Python (``--show``)."""

from __future__ import annotations

import sys
from typing import Any

from agglo_core import ConfigError, compile_plan, load_config


def main(args: Any) -> int:
    from handlers.runtime.boot import UsageError, read_config_file

    if not args.show:
        raise UsageError("say what to do: --show prints the generated Python")
    try:
        plan = compile_plan(load_config(read_config_file(args.config)))
    except ConfigError as e:
        raise UsageError(f"{args.config}: {e}") from None
    sys.stdout.write(plan.source())
    return 0
