"""Cold start for the local adapters: read a config file, compile it, build connectors once."""

from __future__ import annotations

from collections.abc import Sequence

from agglo_core import ConfigError
from handlers.connectors import UnknownConnector, local_registry
from handlers.runtime.config_source import MAX_CONFIG_BYTES, ConfigTooLarge, bounded_config
from handlers.runtime.driver import Runtime
from handlers.runtime.entwine_keys import compile_with_keys
from handlers.runtime.execs import ExecRunner, allow_list_from


class UsageError(Exception):
    """Bad config or bad usage: exit status 2."""


def read_config_file(path: str) -> bytes:
    """The bytes of the config at ``path``; a config larger than ``MAX_CONFIG_BYTES`` is refused unread."""
    try:
        with open(path, "rb") as f:
            return bounded_config(f.read(MAX_CONFIG_BYTES + 1), path)
    except OSError as e:
        raise UsageError(f"cannot read config {path}: {e.strerror}") from None
    except ConfigTooLarge as e:
        raise UsageError(str(e)) from None


def build_runtime(config_path: str, allow_exec: Sequence[str] | None, exec_timeout: float,
                  dedupe: bool = True) -> Runtime:
    try:
        plan = compile_with_keys(read_config_file(config_path))
    except ConfigError as e:
        raise UsageError(f"{config_path}: {e}") from None
    try:
        return Runtime.build(plan, local_registry(), ExecRunner(allow_list_from(allow_exec), exec_timeout),
                             dedupe=dedupe)
    except UnknownConnector as e:
        raise UsageError(f"{config_path}: {e}") from None
