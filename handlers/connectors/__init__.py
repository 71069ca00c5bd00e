"""Connectors, one module per backend family, found by connection-string scheme.

Every connector answers the core's effects for one external system through
``perform(effects) -> results`` (one result per effect, in order; an
``EffectFailed`` fails just that effect). Each connector module declares the
``SPECS`` of what it serves beside its code (``spec.ConnectorSpec``); the
``catalog`` gathers them, and every adapter's registry holds them all
(``default_registry()``). Tests register their own factories the same way.
"""

from __future__ import annotations

import dataclasses
import os
import re
import sqlite3
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any, Protocol

from agglo_core.connstr import scheme_of
from agglo_core.ir import ExternalIR, PlanIR

if TYPE_CHECKING:
    from agglo_core.config import External, PipelinesConfig
    from handlers.connectors.spec import ConnectorSpec


class Connector(Protocol):
    def perform(self, effects: list[Any]) -> list[Any]: ...


Factory = Callable[[ExternalIR], Connector]
"""Makes a connector for an external system, given as IR (plain data: a compiled plan has no config models)."""


class UnknownConnector(ValueError):
    pass


_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


def as_ir(external: External | ExternalIR) -> ExternalIR:
    """An external system as connectors take it: from the IR, or from a config's model."""
    if isinstance(external, ExternalIR):
        return external
    return ExternalIR(external.name, external.externalType.value, external.connectionString)


def expand_environment(external: ExternalIR, env: dict[str, str] | None = None) -> ExternalIR:
    """``${NAME}`` in a connection string, from the environment: one config for every stack.

    Only connectors see the expanded string; outputs keep the config's own text.
    """
    cs = external.connection_string
    if "${" not in cs:
        return external
    environ: Mapping[str, str] = os.environ if env is None else env
    missing = [m.group(1) for m in _ENV_REF.finditer(cs) if m.group(1) not in environ]
    if missing:
        raise UnknownConnector(f"external system '{external.name}': environment variable(s) "
                               f"{', '.join(missing)} not set (used in its connection string)")
    return dataclasses.replace(external, connection_string=_ENV_REF.sub(lambda m: environ[m.group(1)], cs))


class Registry:
    """Factories keyed by (externalType, scheme). Scheme "" stands for a bare path."""

    def __init__(self) -> None:
        self._factories: dict[tuple[str, str], Factory] = {}
        self._specs: dict[tuple[str, str], ConnectorSpec] = {}

    def register(self, external_type: str, scheme: str, factory: Factory) -> None:
        self._factories[(external_type, scheme)] = factory
        self._specs.pop((external_type, scheme), None)

    def register_spec(self, spec: ConnectorSpec) -> None:
        """Every (externalType, scheme) the spec serves, built by its factory once its options check out."""
        for external_type in spec.external_types:
            for scheme in spec.schemes:
                self.register(external_type, scheme, lambda ext, spec=spec: _build(spec, ext))  # type: ignore[misc]
                self._specs[(external_type, scheme)] = spec

    def spec(self, external_type: str, scheme: str) -> ConnectorSpec | None:
        """The spec behind a registered factory (None: a factory registered without one, as tests do)."""
        return self._specs.get((external_type, scheme))

    def copy(self) -> Registry:
        other = Registry()
        other._factories = dict(self._factories)
        other._specs = dict(self._specs)
        return other

    def build(self, external: External | ExternalIR) -> Connector:
        from handlers.connectors.catalog import redact

        template = as_ir(external).connection_string  # shown in messages: a secret from ${VAR} never is
        external = expand_environment(as_ir(external))
        etype = external.external_type
        key = (etype, scheme_of(external.connection_string))
        factory = self._factories.get(key)
        if factory is None:
            known = sorted(s or "<a directory path>" for t, s in self._factories if t == etype)
            raise UnknownConnector(
                f"external system '{external.name}' ({etype}): no connector for "
                f"'{redact(template)}'; this adapter offers: {', '.join(known) or 'none'}")
        spec = self._specs.get(key)
        return factory(external) if spec is None else _build(spec, external, template)

    def build_all(self, plan: PlanIR | PipelinesConfig, names: set[str] | None = None) -> dict[str, Connector]:
        """Connectors for the externals of a plan's IR or a config (only ``names``, if given); every problem
        at once."""
        externals: Iterable[External | ExternalIR] = plan.externals if isinstance(plan, PlanIR) else \
            plan.externalSystems
        built, problems = {}, []
        for ext in externals:
            if names is not None and ext.name not in names:
                continue
            try:
                built[ext.name] = self.build(ext)
            except (UnknownConnector, ValueError) as e:
                problems.append(str(e))
            except (OSError, sqlite3.Error) as e:  # a path that cannot be used (a directory, no permission…)
                problems.append(f"external system '{ext.name}' cannot be opened: {e}")
        if problems:
            raise UnknownConnector("\n".join(problems))
        return built


def _build(spec: ConnectorSpec, external: ExternalIR, template: str | None = None) -> Connector:
    """``spec``'s connector for an external (its connection string expanded), after checking its options.

    ``template`` is the connection string as the config wrote it (``${VAR}`` unexpanded): messages show it.
    """
    from handlers.connectors.catalog import redact

    cs = external.connection_string
    shown = redact(cs if template is None else template)
    if spec.library is not None and not spec.library.installed():
        raise UnknownConnector(f"external system '{external.name}' ('{shown}'): {spec.library.missing(spec.name)}")
    problems = spec.problems(cs)
    if problems:
        raise ValueError(f"external system '{external.name}' ('{shown}'): {'; '.join(problems)}")
    defaults = {o.name: o.default for o in spec.options if o.default is not None}
    return spec.construct(external, {**defaults, **spec.parse(cs)}, shown)


def default_registry() -> Registry:
    """Every connector, for every adapter: the same config runs on Lambda, Cloud Functions and locally."""
    from handlers.connectors.catalog import registry_of

    return registry_of()
