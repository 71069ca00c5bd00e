"""Reads the private keys a config's entwine processes name (``pemPath``), once, at cold start."""

from __future__ import annotations

from agglo_core import ConfigError, PipelinesConfig, Plan, compile_plan, load_config


def read_pem_keys(config: PipelinesConfig) -> dict[str, bytes]:
    """PEM bytes by path for every entwine ``pemPath``; every unreadable one in one ``ConfigError``."""
    keys: dict[str, bytes] = {}
    problems = []
    for i, definition in enumerate(config.processDefinitions):
        body = definition.entwine
        if body is None or body.pemPath in keys:
            continue
        where = f"processDefinitions[{i}].entwine.pemPath"
        if not body.pemPath:
            problems.append(f"{where}: must name a PEM private key file")
            continue
        try:
            with open(body.pemPath, "rb") as f:
                keys[body.pemPath] = f.read()
        except OSError as e:
            problems.append(f"{where}: cannot read {body.pemPath}: {e.strerror}")
    if problems:
        raise ConfigError(problems)
    return keys


def compile_with_keys(source: str | bytes) -> Plan:
    """Load and compile a config, with the private keys its entwine processes name read from disk.

    Its external systems are checked against the connector specs (whatever the adapter), and every
    problem is raised at once in one ``ConfigError``; connection strings in outputs and messages go
    through the specs' redaction, which knows each connector's secret options.
    """
    from handlers.connectors.catalog import redact
    from handlers.connectors.checks import check_externals, check_raw_externals

    try:
        config = load_config(source)
    except ConfigError as e:
        raise ConfigError([*e.problems, *check_raw_externals(source)]) from None
    problems = check_externals(config)
    keys: dict[str, bytes] = {}
    try:
        keys = read_pem_keys(config)
    except ConfigError as e:
        problems += e.problems
    if problems:
        raise ConfigError(problems)
    return compile_plan(config, keys, redact=redact)
