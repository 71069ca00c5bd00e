"""The frozen IR between a validated config and execution: plain data, no pydantic.

``build_ir(config)`` turns a validated ``PipelinesConfig`` into frozen
dataclasses and tuples; ``PlanIR.to_data()`` / ``PlanIR.from_data()`` round-trip
it through JSON-able data, so a deployable artefact can carry it and load it
without the config models. Every stage (``agglo_core.stages``) and code
generation (``agglo_core.codegen``) read only this: it holds all a plan needs
from its config (the processes, the definitions they refer to by name, the
externals, the instrumentation adapters read).

A process's parameters are its body as data (maps stay maps, lists become
tuples), except that every condition is a small expression tree (``Node``):

* ``("const", value)``, ``("var", segs)``: a literal; the value at a path (MISSING when absent)
* ``("exists", segs, want)``: a present (``want``) or absent field; ``("all", (node, ...))``: several, ANDed
* ``("cmp", op, lhs, rhs)``: Equal, NotEqual, GreaterThan…; ``("match", want, lhs, rhs)``: a regex search
* ``("and", lhs, rhs)``, ``("or", lhs, rhs)``: each side must be ``True``
* ``("arith", op, lhs, rhs)``, ``("unary", op, rhs)``: binary and unary operators
* ``("is_true", node)``: a condition whose expression makes a value: it holds when that value is ``True``

A condition that always holds is ``None``.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from agglo_core.config import PipelinesConfig

Node = tuple[Any, ...]

IR_VERSION = 3
"""Raised whenever the IR's shape or meaning changes: an artefact written with another version is not loaded.

3: the unary ops follow binge (``Inversion`` is logical not, ``LogicalNot`` bitwise not), so a plan of
version 2 would read its unary ops the other way round.
"""


@dataclass(frozen=True, slots=True)
class Instrumentation:
    """What a pipeline's process asks adapters to measure (binge's ``instrumentation``)."""

    tracing: bool = False
    latency: bool = False
    counter: bool = False


NO_INSTRUMENTATION = Instrumentation()


@dataclass(frozen=True, slots=True)
class ProcessIR:
    """One process of one pipeline: its definition's kind, name and parameters, its retry policy and what
    adapters measure of it."""

    name: str
    kind: str
    params: Mapping[str, Any]
    retries: int = 0
    backoff_ms: int = 0
    instrumentation: Instrumentation = NO_INSTRUMENTATION


@dataclass(frozen=True, slots=True)
class PipelineIR:
    name: str
    processes: tuple[ProcessIR, ...]
    tracing: bool = False


@dataclass(frozen=True, slots=True)
class ExternalIR:
    name: str
    external_type: str
    connection_string: str


@dataclass(frozen=True, slots=True)
class PlanIR:
    partition: str
    pipelines: tuple[PipelineIR, ...]
    externals: tuple[ExternalIR, ...] = ()
    definitions: tuple[ProcessIR, ...] = ()
    """Process definitions that stages use by name, outside any pipeline (a tee's transformer)."""

    def external(self, name: str) -> ExternalIR:
        return next(e for e in self.externals if e.name == name)

    def definition(self, name: str) -> ProcessIR:
        return next(d for d in self.definitions if d.name == name)

    def to_data(self) -> dict[str, Any]:
        """Plain JSON-able data (tuples as lists) that ``from_data`` turns back into an equal IR."""
        return {
            "version": IR_VERSION, "partition": self.partition,
            "pipelines": [{"name": p.name, "tracing": p.tracing, "processes": [_process_data(s) for s in p.processes]}
                          for p in self.pipelines],
            "externals": [{"name": e.name, "externalType": e.external_type,
                           "connectionString": e.connection_string} for e in self.externals],
            "definitions": [_process_data(d) for d in self.definitions],
        }

    @classmethod
    def from_data(cls, data: Mapping[str, Any]) -> PlanIR:
        """The IR ``to_data`` wrote. ``ValueError`` for another IR version or data of the wrong shape."""
        if data.get("version") != IR_VERSION:
            raise ValueError(f"IR version {data.get('version')!r} is not {IR_VERSION}")
        try:
            return cls(
                data["partition"],
                tuple(PipelineIR(p["name"], tuple(_process(s) for s in p["processes"]), p["tracing"])
                      for p in data["pipelines"]),
                tuple(ExternalIR(e["name"], e["externalType"], e["connectionString"]) for e in data["externals"]),
                tuple(_process(d) for d in data["definitions"]),
            )
        except (KeyError, TypeError, AttributeError) as e:
            raise ValueError(f"IR data of the wrong shape: {type(e).__name__}: {e}") from None


def _process_data(s: ProcessIR) -> dict[str, Any]:
    i = s.instrumentation
    return {"name": s.name, "kind": s.kind, "params": thaw(s.params), "retries": s.retries,
            "backoffMs": s.backoff_ms, "instrumentation": [i.tracing, i.latency, i.counter]}


def _process(s: Mapping[str, Any]) -> ProcessIR:
    return ProcessIR(s["name"], s["kind"], _freeze_data(s["params"]), s["retries"], s["backoffMs"],
                     Instrumentation(*s["instrumentation"]))


def thaw(value: Any) -> Any:
    """IR data as plain JSON-able data again: tuples as lists, maps as dicts (a fresh copy)."""
    if type(value) is tuple:
        return [thaw(v) for v in value]
    if isinstance(value, Mapping):
        return {k: thaw(v) for k, v in value.items()}
    return value


def _freeze_data(value: Any) -> Any:
    if type(value) is list:
        return tuple(_freeze_data(v) for v in value)
    if type(value) is dict:
        return {k: _freeze_data(v) for k, v in value.items()}
    return value


# --- building from a validated config (the only part that knows the pydantic models) ---------------------


def build_ir(config: PipelinesConfig) -> PlanIR:
    """The IR of a validated config."""
    from agglo_core.processes import spec_of

    pipelines = []
    used: dict[str, ProcessIR] = {}
    for p in config.pipelines:
        steps = []
        for proc in p.processes:
            definition = config.process(proc.name)
            inst = proc.instrumentation
            steps.append(ProcessIR(proc.name, definition.kind, _freeze_model(definition.body),
                                   proc.retryStrategy.numRetries, proc.retryStrategy.initialBackOffMs,
                                   Instrumentation(inst.enableTracing, inst.latency, inst.counter)))
            for name in spec_of(definition).uses(definition.body):
                used.setdefault(name, definition_ir(config.process(name)))
        pipelines.append(PipelineIR(p.name, tuple(steps), p.enableTracing))
    externals = tuple(ExternalIR(e.name, e.externalType.value, e.connectionString) for e in config.externalSystems)
    return PlanIR(config.partitionUuid, tuple(pipelines), externals, tuple(used.values()))


def definition_ir(definition: Any) -> ProcessIR:
    """A process definition as IR, outside any pipeline (a tee's transformer)."""
    return ProcessIR(definition.name, definition.kind, _freeze_model(definition.body))


def _freeze_model(value: Any) -> Any:
    from pydantic import BaseModel

    from agglo_core.config import Condition

    if isinstance(value, Condition):
        return condition_node(value)
    if isinstance(value, BaseModel):
        return {name: _freeze_model(getattr(value, name)) for name in type(value).model_fields}
    if isinstance(value, enum.Enum):
        return value.value
    if type(value) is tuple or type(value) is list:
        return tuple(_freeze_model(v) for v in value)
    if type(value) is dict:
        return {k: _freeze_model(v) for k, v in value.items()}
    return value


def _segs(path: str) -> tuple[str, ...]:
    return tuple(path.split("."))


def condition_node(condition: Any) -> Node | None:
    """A ``Condition`` as a ``Node`` tree, or None when it always holds (absent or ``{}``)."""
    if condition is None:
        return None
    if condition.exists is not None:
        ops = [("exists", _segs(op.key), op.op.value == "Exists") for op in condition.exists.ops]
        if not ops:
            return None
        return ops[0] if len(ops) == 1 else ("all", tuple(ops))
    if condition.expression is not None:
        expr = condition.expression
        node = _expression(expr)
        if expr.comparator is not None or expr.logical is not None:
            return node  # these always answer a bool
        return ("is_true", node)
    return None


def _expression(expr: Any) -> Node:
    if expr.boolean is not None:
        return ("const", expr.boolean.value)
    if expr.comparator is not None:
        c = expr.comparator
        op = c.op.value
        if op in ("RegexMatch", "RegexNotMatch"):
            return ("match", op == "RegexMatch", _operand(c.lhs), _operand(c.rhs))
        return ("cmp", op, _operand(c.lhs), _operand(c.rhs))
    if expr.exists is not None:
        return ("exists", _segs(expr.exists.key), expr.exists.op.value == "Exists")
    if expr.logical is not None:
        kind = "and" if expr.logical.op.value == "LogicalAnd" else "or"
        return (kind, _operand(expr.logical.lhs), _operand(expr.logical.rhs))
    if expr.binary is not None:
        return ("arith", expr.binary.op.value, _operand(expr.binary.lhs), _operand(expr.binary.rhs))
    assert expr.unary is not None  # validation guarantees one is set
    return ("unary", expr.unary.op.value, _operand(expr.unary.rhs))


def _operand(operand: Any) -> Node:
    assert operand is not None  # validation guarantees it
    if operand.variable is not None:
        return ("var", _segs(operand.variable.name))
    if operand.expression is not None:
        return _expression(operand.expression)
    return ("const", operand.literal if operand.literal is not None else operand.numeric)
