"""Reads the private keys a config's processes name (entwine's ``pemPath``), once, at cold start.

Running needs every key; checking a config does not: ``validate_source`` reports
an unreadable key as a warning, so a config validates on a machine that holds no
secrets.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from agglo_core import ConfigError, Plan, compile_plan

if TYPE_CHECKING:
    from agglo_core.config import PipelinesConfig

UNREAD = " (agglo run and the serverless functions refuse to start without it)"


def key_files(config: PipelinesConfig) -> list[tuple[str, str]]:
    """(JSON path of the field, file) of every private key a process of the config names."""
    from agglo_core.processes import spec_of

    return [(f"processDefinitions[{i}].{definition.kind}.{where}", path)
            for i, definition in enumerate(config.processDefinitions)
            for where, path in spec_of(definition).key_files(definition.body)]


def read_key_files(files: Iterable[tuple[str, str]]) -> tuple[dict[str, bytes], list[str]]:
    """PEM bytes by path for each (where, file), and a problem (with where) per unreadable one."""
    keys: dict[str, bytes] = {}
    problems = []
    for where, path in files:
        if path in keys:
            continue
        try:
            with open(path, "rb") as f:
                keys[path] = f.read()
        except OSError as e:
            problems.append(f"{where}: cannot read {path}: {e.strerror}")
    return keys, problems


def read_pem_keys(config: PipelinesConfig) -> tuple[dict[str, bytes], list[str]]:
    """PEM bytes by path for every key file a process names, and a problem (with its path) per unreadable one."""
    return read_key_files(key_files(config))


def _load_checked(source: str | bytes) -> tuple[PipelinesConfig, list[str]]:
    """The config (a structural problem raises, with every connection-string problem beside it), and the
    problems of its connection strings."""
    from agglo_core.config import load_config
    from handlers.connectors.checks import check_externals, check_raw_externals

    try:
        config = load_config(source)
    except ConfigError as e:
        raise ConfigError([*e.problems, *check_raw_externals(source)]) from None
    return config, check_externals(config)


def _compile(config: PipelinesConfig, keys: dict[str, bytes]) -> Plan:
    from handlers.connectors.catalog import redact

    return compile_plan(config, keys, redact=redact)


def compile_with_keys(source: str | bytes) -> Plan:
    """Load and compile a config to run it, with the private keys its processes name read from disk.

    Its external systems are checked against the connector specs (whatever the adapter), and every
    problem is raised at once in one ``ConfigError``; connection strings in outputs and messages go
    through the specs' redaction, which knows each connector's secret options.
    """
    config, problems = _load_checked(source)
    keys, unreadable = read_pem_keys(config)
    if problems or unreadable:
        raise ConfigError([*problems, *unreadable])
    return _compile(config, keys)


def validate_source(source: str | bytes) -> tuple[PipelinesConfig, list[str]]:
    """Check a config as ``compile_with_keys`` does, but report unreadable keys as warnings (returned).

    A key that is there but is no usable key is still an error.
    """
    config, problems = _load_checked(source)
    if problems:
        raise ConfigError(problems)
    keys, unreadable = read_pem_keys(config)
    if not unreadable:
        _compile(config, keys)
    return config, [p + UNREAD for p in unreadable]
