"""One module per process type; ``compile_stage`` picks the right one."""

from __future__ import annotations

from typing import Any

from agglo_core.config import PipelinesConfig, ProcessDefinition
from agglo_core.pipeline import Stage, StageContext
from agglo_core.processes.spec import ExternalNeed, ExternalRef


def compile_stage(definition: ProcessDefinition, ctx: StageContext) -> Stage:
    from agglo_core.processes import (
        aggregator,
        annotator,
        completer,
        continuation,
        entwine,
        filter,
        spawner,
        tee,
        transformer,
    )

    modules: dict[str, Any] = {
        "annotator": annotator, "aggregator": aggregator, "completer": completer, "filter": filter,
        "spawner": spawner, "tee": tee, "transformer": transformer, "continuation": continuation,
        "entwine": entwine,
    }
    return modules[definition.kind].compile(definition.body, ctx)


# The external systems each process kind refers to, and what it needs of them.
EXTERNALS: dict[str, tuple[ExternalRef, ...]] = {
    "aggregator": (ExternalRef("stateStore", "ExternalKVStore", "key-value store", frozenset({"ApplyDeltas"})),),
    "completer": (ExternalRef("stateStore", "ExternalKVStore", "key-value store", frozenset({"JoinAdd"})),),
    "tee": (ExternalRef("outputConnectorRef", None, "output", frozenset({"Put"})),),
    "entwine": (
        ExternalRef("streamStateStore", "ExternalKVStore", "key-value store",
                    frozenset({"GetItems", "CompareAndPut"})),
        ExternalRef("objectStore", "ExternalObjectStore", "object store", frozenset({"Put"})),
    ),
}


def external_needs(config: PipelinesConfig) -> list[ExternalNeed]:
    """Every reference a process definition makes to an external system, with its JSON path."""
    needs = []
    for i, d in enumerate(config.processDefinitions):
        for ref in EXTERNALS.get(d.kind, ()):
            name = getattr(d.body, ref.field)
            if name:
                needs.append(ExternalNeed(f"processDefinitions[{i}].{d.kind}.{ref.field}", name,
                                          ref.external_type, ref.capabilities))
    return needs
