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
    """Load and compile a config, with the private keys its entwine processes name read from disk."""
    config = load_config(source)
    return compile_plan(config, read_pem_keys(config))
