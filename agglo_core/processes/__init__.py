"""One module per process type, each declaring its ``SPEC`` (``agglo_core.processes.spec``): the config side.

A process type's model, checks, lint rules and docs live here; how it runs lives
in ``agglo_core.stages.<kind>`` (no pydantic), which its ``SPEC`` points at. A new
process type is a new module here with a ``SPEC`` (and, to run without the config
models, a module in ``agglo_core.stages``): validation, lint, the schema,
pictures, explanations and the README's reference find it through ``specs()``.
"""

from __future__ import annotations

import importlib
import pkgutil
from functools import cache
from typing import Any

from pydantic import Field, create_model

from agglo_core.config import PipelinesConfig, ProcessDefinition
from agglo_core.processes.spec import ExternalNeed, ProcessSpec

_NOT_PROCESSES = frozenset({"spec"})


@cache
def specs() -> dict[str, ProcessSpec]:
    """Every process type's spec by kind, in binge's order (its proto's field numbers)."""
    found = []
    for info in pkgutil.iter_modules(__path__):
        if info.name not in _NOT_PROCESSES:
            found.append(importlib.import_module(f"{__name__}.{info.name}").SPEC)
    return {s.kind: s for s in sorted(found, key=lambda s: s.proto_field)}


def spec_of(definition: ProcessDefinition) -> ProcessSpec:
    return specs()[definition.kind]


@cache
def definition_model() -> type[ProcessDefinition]:
    """The pydantic model of a process definition: one optional field per process kind, exactly one set."""
    fields: dict[str, Any] = {kind: (s.model | None, Field(None, description=s.summary))
                              for kind, s in specs().items()}
    return create_model("ProcessDefinition", __base__=ProcessDefinition, **fields)


@cache
def config_model() -> type[PipelinesConfig]:
    """The whole config's model with its process definitions spelled out (for the JSON schema)."""
    definition = definition_model()
    return create_model("PipelinesConfig", __base__=PipelinesConfig,
                        processDefinitions=(tuple[definition, ...], ()))  # type: ignore[valid-type]


def external_needs(config: PipelinesConfig) -> list[ExternalNeed]:
    """Every reference a process definition makes to an external system, with its JSON path."""
    needs = []
    for i, d in enumerate(config.processDefinitions):
        for ref in spec_of(d).externals:
            name = getattr(d.body, ref.field)
            if name:
                needs.append(ExternalNeed(f"processDefinitions[{i}].{d.kind}.{ref.field}", name,
                                          ref.external_type, ref.capabilities))
    return needs
