"""Connectors, one module per backend family, found by connection-string scheme.

Every connector answers the core's effects for one external system through
``perform(effects) -> results`` (one result per effect, in order; an exception
fails the whole group, an ``EffectFailed`` just that effect). Adapters register
the factories they offer at cold start; tests register their own the same way.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from typing import Any, Protocol

from agglo_core.config import External, PipelinesConfig
from agglo_core.connstr import parse_options, redact, scheme_of


class Connector(Protocol):
    def perform(self, effects: list[Any]) -> list[Any]: ...


Factory = Callable[[External], Connector]


class UnknownConnector(ValueError):
    pass


_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


def expand_environment(external: External, env: dict[str, str] | None = None) -> External:
    """``${NAME}`` in a connection string, from the environment: one config for every stack.

    Only connectors see the expanded string; outputs keep the config's own text.
    """
    cs = external.connectionString
    if "${" not in cs:
        return external
    env = os.environ if env is None else env
    missing = [m.group(1) for m in _ENV_REF.finditer(cs) if m.group(1) not in env]
    if missing:
        raise UnknownConnector(f"external system '{external.name}': environment variable(s) "
                               f"{', '.join(missing)} not set (used in its connection string)")
    return external.model_copy(update={"connectionString": _ENV_REF.sub(lambda m: env[m.group(1)], cs)})


def options_factory(cls: Callable[[dict[str, str]], Connector], required: str) -> Factory:
    """Builds ``cls(options)`` from a ``scheme:key=value,…`` string, insisting on the option ``required``."""

    def build(ext: External) -> Connector:
        opts = parse_options(ext.connectionString.split(":", 1)[1])
        if not opts.get(required):
            raise ValueError(f"external system '{ext.name}': {scheme_of(ext.connectionString)} needs {required}=…")
        return cls(opts)

    return build


class Registry:
    """Factories keyed by (externalType, scheme). Scheme "" stands for a bare path."""

    def __init__(self) -> None:
        self._factories: dict[tuple[str, str], Factory] = {}

    def register(self, external_type: str, scheme: str, factory: Factory) -> None:
        self._factories[(external_type, scheme)] = factory

    def copy(self) -> Registry:
        other = Registry()
        other._factories = dict(self._factories)
        return other

    def build(self, external: External) -> Connector:
        external = expand_environment(external)
        etype = external.externalType.value
        factory = self._factories.get((etype, scheme_of(external.connectionString)))
        if factory is None:
            known = sorted(s or "<a directory path>" for t, s in self._factories if t == etype)
            raise UnknownConnector(
                f"external system '{external.name}' ({etype}): no connector for "
                f"'{redact(external.connectionString)}'; this adapter offers: {', '.join(known) or 'none'}")
        return factory(external)

    def build_all(self, config: PipelinesConfig, names: set[str] | None = None) -> dict[str, Connector]:
        """Connectors for the config's externals (only ``names``, if given); every problem at once."""
        built, problems = {}, []
        for ext in config.externalSystems:
            if names is not None and ext.name not in names:
                continue
            try:
                built[ext.name] = self.build(ext)
            except (UnknownConnector, ValueError) as e:
                problems.append(str(e))
        if problems:
            raise UnknownConnector("\n".join(problems))
        return built


def local_registry() -> Registry:
    """The connectors that need no cloud: memory, SQLite, files, HTTP, Redis."""
    from handlers.connectors import files, http, memory, redis_kv, sqlite

    r = Registry()
    memory.register(r)
    sqlite.register(r)
    redis_kv.register(r)
    files.register(r)
    http.register(r)
    return r
