"""What a process type declares about itself, beside its code (Redpanda Connect's component specs).

Validation, lint, the JSON schema, the graph, ``run --explain`` and the README's
process reference read these specs; nothing else knows a process kind. Paths a
spec yields are relative to the process body (``aggregation.key``); whoever reads
the spec puts the definition's own path in front.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from agglo_core.config import ConfigModel, PipelinesConfig, ProcessDefinition

if TYPE_CHECKING:
    from agglo_core.codegen import Emit
    from agglo_core.pipeline import Stage, StageContext


@dataclass(frozen=True, slots=True)
class ExternalRef:
    """A field of a process that names an external system, and what the process needs of it."""

    field: str
    external_type: str | None
    """The ``externalType`` the system must have (None: any type that can take the effects)."""
    what: str
    """How a person calls such a system ("key-value store")."""
    capabilities: frozenset[str]
    """The effects (by class name in ``agglo_core.effects``) the system's connector must perform."""


@dataclass(frozen=True, slots=True)
class ExternalNeed:
    """One reference from a config to an external system, with the JSON path of the referring field."""

    path: str
    external: str
    external_type: str | None
    capabilities: frozenset[str]


@dataclass(frozen=True, slots=True)
class Guard:
    """A condition of a process: where it is, what it guards ("condition", "annotation x")."""

    path: str
    what: str
    condition: Any


@dataclass(frozen=True, slots=True)
class ExecRef:
    """An executable a process runs, where the config names it, and the condition it runs under."""

    path: str
    executable: str
    condition: Any = None


@dataclass(frozen=True, slots=True)
class CheckContext:
    """What a process's own checks may look up in the rest of the config."""

    externals: Mapping[str, str]
    """External system name -> its externalType."""
    processes: Mapping[str, ProcessDefinition]
    invalid_names: frozenset[str] = frozenset()
    """Names declared by definitions that already failed validation: references to them are not reported."""


@dataclass(frozen=True, slots=True)
class Finding:
    """A lint warning (or, as ``level="error"``, a validation problem; as ``level="note"``, something worth
    knowing that ``--strict`` does not fail on) at a JSON path, with its rule id."""

    path: str
    rule: str
    message: str
    level: str = "warning"  # or "error" (the config is invalid) or "note"

    def to_dict(self) -> dict[str, str]:
        return {"path": self.path, "level": self.level, "rule": self.rule, "message": self.message}


@dataclass(frozen=True, slots=True)
class LintContext:
    config: PipelinesConfig
    exec_allowed: Callable[[str], bool]


Problem = tuple[str, str]
"""(path relative to the body, message)."""


def _nothing(*_: Any) -> Iterator[Any]:
    return iter(())


def the_condition(body: Any) -> Iterator[Guard]:
    """The common case: a process with one ``condition`` that decides whether it acts on an event."""
    if getattr(body, "condition", None) is not None:
        yield Guard("condition", "condition", body.condition)


@dataclass(frozen=True)
class ProcessSpec:
    """One process type: its config model, how it compiles, what it checks, lints, needs and says of itself."""

    kind: str
    """The key in a process definition (``aggregator``)."""
    proto_field: int
    """Its number in binge's ``ProcessDefinition`` oneof: the order of kinds in docs and schema."""
    model: type[ConfigModel]
    compile: Callable[[StageContext], Stage] | None
    """Builds its stage from the IR (``ctx.step``): the function of its module in ``agglo_core.stages``."""
    summary: str
    """One sentence: the README's table of process types, the JSON schema's description."""
    doc: str
    """The README's reference for it (Markdown, with an example config)."""
    externals: tuple[ExternalRef, ...] = ()
    check: Callable[[Any, CheckContext], Iterable[Problem]] = _nothing
    """Problems beyond the model's own types (empty names, bad regexes, references to other processes)."""
    lint: Callable[[Any, LintContext], Iterable[Finding]] = _nothing
    """Warnings a reviewer would give about this body (paths relative to it, as for ``check``)."""
    conditions: Callable[[Any], Iterable[Guard]] = the_condition
    executables: Callable[[Any], Iterable[ExecRef]] = _nothing
    uses: Callable[[Any], Iterable[str]] = _nothing
    """Names of other process definitions this one runs (a tee's transformer)."""
    key_files: Callable[[Any], Iterable[tuple[str, str]]] = _nothing
    """(path relative to the body, file) of each private key the adapter reads for it at cold start."""
    describe: Callable[[Any], list[str]] = lambda body: []
    """What it does, a line each, for pictures (``agglo graph``)."""
    gates_pipeline: bool = False
    """Its condition decides whether the pipeline goes on (drawn on the edge after it)."""
    ignored: tuple[str, ...] = field(default=())
    """binge fields agglo accepts and does not act on (lint says so when they are set)."""
    emit: Emit | None = None
    """Writes this process as inline Python from its IR (``agglo_core.codegen``); None: a generated plan
    calls its interpreted stage instead. Only pure processes emit."""
