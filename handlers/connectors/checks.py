"""A config's external systems checked against the connector specs, whatever the adapter.

Problems read ``"<json path>: <message>"``, as ``ConfigError.problems`` do: an
unknown scheme, a scheme that does not serve the system's ``externalType``, an
unknown or misspelt option, a missing required option or a bad value, and a
process that needs of a system an effect its connector cannot perform.
``${NAME}`` parts are not expanded: such a value is accepted for any option.
"""

from __future__ import annotations

import json

from agglo_core.config import External, PipelinesConfig
from agglo_core.connstr import scheme_of
from agglo_core.processes import external_needs
from handlers.connectors.catalog import CATALOG, spec_for
from handlers.connectors.spec import ENV_REF, ConnectorSpec, did_you_mean


def _display(scheme: str, catalog: tuple[ConnectorSpec, ...]) -> str:
    spec = next((s for s in catalog if scheme in s.schemes), None)
    return spec.display(scheme) if spec else f"{scheme}:"


def _schemes_serving(external_type: str, catalog: tuple[ConnectorSpec, ...],
                     capabilities: frozenset[str] = frozenset()) -> list[str]:
    return [s.display(scheme) for s in catalog if external_type in s.external_types
            and capabilities <= s.capabilities for scheme in s.schemes]


def scheme_from_environment(connection_string: str) -> bool:
    """Whether ``${NAME}`` decides the scheme itself, so nothing can be checked before it is filled in."""
    m = ENV_REF.search(connection_string)
    return m is not None and ":" not in connection_string[:m.start()]


def check_external(path: str, ext: External, catalog: tuple[ConnectorSpec, ...] = CATALOG) -> list[str]:
    """The problems of one external system (``path``: its JSON path, as ``externalSystems[2]``)."""
    cs = ext.connectionString
    etype = ext.externalType.value
    if not cs or etype == "ExternalUnknown" or scheme_from_environment(cs):
        return []  # validation already says so, or only the environment can tell
    serving = _schemes_serving(etype, catalog)
    if not serving:
        return [f"{path}.externalType: no connector serves {etype} (there is none for it yet)"]
    scheme = scheme_of(cs)
    spec = spec_for(etype, scheme, catalog)
    if spec is None:
        known = {s for spec_ in catalog for s in spec_.schemes}
        if scheme in known:
            others = sorted({t for s in catalog if scheme in s.schemes for t in s.external_types})
            return [f"{path}.connectionString: {_display(scheme, catalog)} serves {', '.join(others)}, not {etype}; "
                    f"for {etype} use one of: {', '.join(serving)}"]
        if not scheme:
            return [f"{path}.connectionString: a bare path is not a connection string for {etype} "
                    f"(it takes: {', '.join(serving)})"]
        shown = lambda s: repr(_display(s, catalog))  # noqa: E731
        own = {scheme_ for spec_ in catalog if etype in spec_.external_types for scheme_ in spec_.schemes}
        hint = did_you_mean(scheme, own, shown) or did_you_mean(scheme, known, shown)  # this type's first
        return [f"{path}.connectionString: unknown scheme '{scheme}:'{hint} ({etype} takes: {', '.join(serving)})"]
    return [f"{path}.connectionString: {problem}" for problem in spec.problems(cs)]


def check_externals(config: PipelinesConfig, catalog: tuple[ConnectorSpec, ...] = CATALOG) -> list[str]:
    """Every problem of the config's external systems, and of what its processes need of them."""
    problems: list[str] = []
    for i, system in enumerate(config.externalSystems):
        problems += check_external(f"externalSystems[{i}]", system, catalog)
    by_name = {system.name: system for system in config.externalSystems}
    for need in external_needs(config):
        ext = by_name.get(need.external)
        if ext is None or scheme_from_environment(ext.connectionString):
            continue  # an unknown name is validation's to report
        scheme = scheme_of(ext.connectionString)
        spec = spec_for(ext.externalType.value, scheme, catalog)
        if spec is None:
            continue  # reported above
        missing = need.capabilities - spec.capabilities
        if missing:
            able = _schemes_serving(need.external_type or ext.externalType.value, catalog, need.capabilities)
            kind, _, field = need.path.rpartition(".")
            problems.append(
                f"{need.path}: '{ext.name}' ({spec.display(scheme)}) cannot {', '.join(sorted(missing))}; "
                f"{kind.rpartition('.')[2]}'s {field} needs a connector that can"
                f"{': ' + ', '.join(able) if able else ' (there is none)'}")
    return problems


def check_raw_externals(source: str | bytes | dict, catalog: tuple[ConnectorSpec, ...] = CATALOG) -> list[str]:
    """The external systems' own problems in a config that does not validate (so every problem shows at once)."""
    try:
        data = json.loads(source) if isinstance(source, str | bytes) else source
    except ValueError:
        return []
    entries = data.get("externalSystems") if isinstance(data, dict) else None
    problems: list[str] = []
    for i, entry in enumerate(entries if isinstance(entries, list) else []):
        try:
            ext = External.model_validate(entry)
        except ValueError:
            continue  # validation reports it
        problems += check_external(f"externalSystems[{i}]", ext, catalog)
    return problems
