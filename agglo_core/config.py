"""binge's pipeline config (``pipeline.proto`` in its JSON form) as pydantic models.

Field names, enum spellings and nesting follow the proto exactly, so binge's
configs load unchanged. ``load_config`` validates everything at once and raises
one ``ConfigError`` that lists every problem with its JSON path.
"""

from __future__ import annotations

import enum
from typing import Any

import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from agglo_core.errors import ConfigError


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class _ProtoEnum(enum.Enum):
    """A proto enum: JSON gives the name (or, as protojson allows, the number)."""

    @classmethod
    def _missing_(cls, value: object) -> Any:
        if isinstance(value, int) and not isinstance(value, bool):
            for member in cls:
                if member.number == value:  # type: ignore[attr-defined]
                    return member
        return None

    def __new__(cls, name: str, number: int) -> _ProtoEnum:
        obj = object.__new__(cls)
        obj._value_ = name
        obj.number = number  # type: ignore[attr-defined]
        return obj


def _proto_enum(name: str, members: list[tuple[str, int]]) -> type[_ProtoEnum]:
    return _ProtoEnum(name, [(m, (m, n)) for m, n in members])  # type: ignore[return-value]


ExternalType = _proto_enum("ExternalType", [
    ("ExternalUnknown", 0), ("ExternalKVStore", 1), ("ExternalObjectStore", 2), ("ExternalPubSub", 3),
    ("ExternalHttp", 4), ("ExternalLocalFile", 5), ("ExternalSearchIndex", 6),
])
AggregationType = _proto_enum("AggregationType", [
    ("AggUnknown", 0), ("AggSum", 1), ("AggMax", 2), ("AggMin", 3), ("AggAvg", 4), ("AggCount", 5),
    ("AggDiscreteHistogram", 6),
])
TransformationType = _proto_enum("TransformationType", [
    ("TransformUnknown", 0), ("TransformSum", 1), ("TransformCopy", 2), ("TransformMapRegex", 3),
    ("TransformMapAdd", 4), ("TransformMapMult", 5), ("TransformCount", 6), ("TransformLeftFold", 7),
    ("TransformRightFold", 8), ("TransformMap", 9), ("TransformPopHead", 10), ("TransformPopTail", 11),
])
ExistsOperator = _proto_enum("ExistsOperator", [("UnknownExists", 0), ("Exists", 1), ("NotExists", 2)])
UnaryOperator = _proto_enum("UnaryOperator", [
    ("UnknownUnary", 0), ("Negation", 3), ("Inversion", 4), ("LogicalNot", 5),
])
BinaryOperator = _proto_enum("BinaryOperator", [
    ("UnknownBinary", 0), ("Addition", 6), ("Subtract", 7), ("Multiply", 8), ("Divide", 9), ("Power", 10),
    ("Modulus", 11), ("RightShift", 12), ("LeftShift", 13), ("Or", 14), ("And", 15), ("Xor", 16),
])
LogicalOperator = _proto_enum("LogicalOperator", [("UnknownLogical", 0), ("LogicalAnd", 17), ("LogicalOr", 18)])
ComparatorOperator = _proto_enum("ComparatorOperator", [
    ("UnknownComparator", 0), ("GreaterThan", 19), ("LessThan", 20), ("GreaterThanOrEqual", 21),
    ("LessThanOrEqual", 22), ("Equal", 23), ("NotEqual", 24), ("RegexMatch", 25), ("RegexNotMatch", 26),
])

Number = int | float


def _exactly_one(model: BaseModel, fields: tuple[str, ...], what: str, allow_none: bool = False) -> None:
    present = [f for f in fields if getattr(model, f) is not None]
    if len(present) > 1 or (not present and not allow_none):
        got = ", ".join(present) if present else "none"
        raise ValueError(f"{what} must set exactly one of {'|'.join(fields)} (got {got})")


# --- conditions -------------------------------------------------------------


class Variable(_Model):
    name: str = ""


class Operand(_Model):
    expression: Expression | None = None
    variable: Variable | None = None
    literal: str | None = None
    numeric: Number | None = None

    @model_validator(mode="after")
    def _oneof(self) -> Operand:
        _exactly_one(self, ("expression", "variable", "literal", "numeric"), "an operand")
        return self


class BooleanExpression(_Model):
    value: bool = False


class ComparatorExpression(_Model):
    lhs: Operand | None = None
    rhs: Operand | None = None
    op: ComparatorOperator = ComparatorOperator("UnknownComparator")  # type: ignore[valid-type]


class LogicalExpression(_Model):
    lhs: Operand | None = None
    rhs: Operand | None = None
    op: LogicalOperator = LogicalOperator("UnknownLogical")  # type: ignore[valid-type]


class BinaryExpression(_Model):
    lhs: Operand | None = None
    rhs: Operand | None = None
    op: BinaryOperator = BinaryOperator("UnknownBinary")  # type: ignore[valid-type]


class UnaryExpression(_Model):
    rhs: Operand | None = None
    op: UnaryOperator = UnaryOperator("UnknownUnary")  # type: ignore[valid-type]


class Expression(_Model):
    boolean: BooleanExpression | None = None
    comparator: ComparatorExpression | None = None
    logical: LogicalExpression | None = None
    binary: BinaryExpression | None = None
    unary: UnaryExpression | None = None

    @model_validator(mode="after")
    def _oneof(self) -> Expression:
        _exactly_one(self, ("boolean", "comparator", "logical", "binary", "unary"), "an expression")
        return self


class ExistsOperation(_Model):
    key: str = ""
    op: ExistsOperator = ExistsOperator("UnknownExists")  # type: ignore[valid-type]


class ExistsExpression(_Model):
    ops: tuple[ExistsOperation, ...] = ()


class Condition(_Model):
    """An absent or empty condition (``{}``) is always true."""

    expression: Expression | None = None
    exists: ExistsExpression | None = None

    @model_validator(mode="after")
    def _oneof(self) -> Condition:
        _exactly_one(self, ("expression", "exists"), "a condition", allow_none=True)
        return self


Operand.model_rebuild()


# --- processes ---------------------------------------------------------------


class Annotation(_Model):
    fieldKey: str = ""
    value: str = ""
    condition: Condition | None = None


class Annotator(_Model):
    name: str = ""
    annotations: tuple[Annotation, ...] = ()


class Aggregation(_Model):
    key: str = ""
    aggregationType: AggregationType = AggregationType("AggUnknown")  # type: ignore[valid-type]
    groupByKeys: tuple[str, ...] = ()


class Aggregator(_Model):
    name: str = ""
    condition: Condition | None = None
    stateStore: str = ""
    aggregation: Aggregation | None = None
    asyncCheckpoint: bool = False
    forwardState: bool = False


class Completion(_Model):
    joinKeys: tuple[str, ...] = ()
    timeoutMs: int = 0


class Completer(_Model):
    name: str = ""
    condition: Condition | None = None
    stateStore: str = ""
    completion: Completion | None = None


class Filter(_Model):
    name: str = ""
    regex: str = ""
    keepMatched: bool = False


class Runnable(_Model):
    pathToExec: str = ""
    cmdArgs: tuple[str, ...] = ()


class Job(_Model):
    runnable: Runnable | None = None


class Spawner(_Model):
    name: str = ""
    condition: Condition | None = None
    delayInMs: int = 0
    doSync: bool = False
    job: Job | None = None


class Tee(_Model):
    name: str = ""
    condition: Condition | None = None
    additionalBody: dict[str, Any] = Field(default_factory=dict)
    transformerRef: str = ""
    outputConnectorRef: str = ""


class Continuation(_Model):
    name: str = ""
    condition: Condition | None = None


class PathArgs(_Model):
    path: str = ""


class ValueArgs(_Model):
    value: Number = 0


class MapRegexArgs(_Model):
    regex: str = ""
    replace: str = ""


class Transformation(_Model):
    condition: Condition | None = None
    transformationType: TransformationType = TransformationType("TransformUnknown")  # type: ignore[valid-type]
    mapArgs: PathArgs | None = None
    mapAddArgs: ValueArgs | None = None
    mapMultArgs: ValueArgs | None = None
    mapRegexArgs: MapRegexArgs | None = None
    leftFoldArgs: PathArgs | None = None
    rightFoldArgs: PathArgs | None = None

    @model_validator(mode="after")
    def _oneof(self) -> Transformation:
        args = ("mapArgs", "mapAddArgs", "mapMultArgs", "mapRegexArgs", "leftFoldArgs", "rightFoldArgs")
        _exactly_one(self, args, "a transformation", allow_none=True)
        return self


class TransformerSpec(_Model):
    sourceField: str = ""
    targetField: str = ""
    transformation: Transformation | None = None


class Transformer(_Model):
    name: str = ""
    specs: tuple[TransformerSpec, ...] = ()
    forwardInputFields: bool = False


class Entwine(_Model):
    name: str = ""
    streamStateStore: str = ""
    objectStore: str = ""
    pemPath: str = ""
    subStreamID: str = ""
    tickerEndpoint: str = ""
    tickerInterval: int = 0
    condition: Condition | None = None


PROCESS_KINDS = ("annotator", "aggregator", "completer", "filter", "spawner", "tee", "transformer",
                 "continuation", "entwine")


class ProcessDefinition(_Model):
    annotator: Annotator | None = None
    aggregator: Aggregator | None = None
    completer: Completer | None = None
    filter: Filter | None = None
    spawner: Spawner | None = None
    tee: Tee | None = None
    transformer: Transformer | None = None
    continuation: Continuation | None = None
    entwine: Entwine | None = None

    @model_validator(mode="after")
    def _oneof(self) -> ProcessDefinition:
        _exactly_one(self, PROCESS_KINDS, "a process definition")
        return self

    @property
    def kind(self) -> str:
        return next(k for k in PROCESS_KINDS if getattr(self, k) is not None)

    @property
    def body(self) -> Any:
        return getattr(self, self.kind)

    @property
    def name(self) -> str:
        return self.body.name


# --- pipelines and externals --------------------------------------------------


class RetryStrategy(_Model):
    numRetries: int = Field(0, ge=0)
    initialBackOffMs: int = Field(0, ge=0)


class ProcessInstrumentation(_Model):
    enableTracing: bool = False
    latency: bool = False
    counter: bool = False


class PipelineProcess(_Model):
    name: str = ""
    retryStrategy: RetryStrategy = RetryStrategy()
    instrumentation: ProcessInstrumentation = ProcessInstrumentation()


class Checkpoint(_Model):
    outputConnectorRef: str = ""
    # binge's own test configs spell a checkpoint this way; accepted so they load unchanged.
    outputConnector: str = ""
    externalType: ExternalType | None = None  # type: ignore[valid-type]


class Pipeline(_Model):
    name: str = ""
    processes: tuple[PipelineProcess, ...] = ()
    checkpoint: Checkpoint | None = None
    enableTracing: bool = False
    enableMetrics: bool = False


class External(_Model):
    externalType: ExternalType = ExternalType("ExternalUnknown")  # type: ignore[valid-type]
    name: str = ""
    connectionString: str = ""

    @field_validator("connectionString")
    @classmethod
    def _strip(cls, v: str) -> str:
        return v.strip()


class PipelinesConfig(_Model):
    partitionUuid: str = ""
    pipelines: tuple[Pipeline, ...] = ()
    processDefinitions: tuple[ProcessDefinition, ...] = ()
    externalSystems: tuple[External, ...] = ()

    def process(self, name: str) -> ProcessDefinition:
        return next(d for d in self.processDefinitions if d.name == name)

    def external(self, name: str) -> External:
        return next(e for e in self.externalSystems if e.name == name)


# --- loading -------------------------------------------------------------------

_SECTIONS: dict[str, Any] = {
    "pipelines": Pipeline,
    "processDefinitions": ProcessDefinition,
    "externalSystems": External,
}


def load_config(source: str | bytes | dict) -> PipelinesConfig:
    """Parse and validate a config given as JSON text or an already-parsed dict.

    Each list element is validated on its own so that one broken process does not
    hide the problems of the others; then the cross-references are checked.
    """
    from agglo_core.validation import check_config  # late: validation imports the models above

    if isinstance(source, str | bytes):
        try:
            data = orjson.loads(source)
        except orjson.JSONDecodeError as e:
            raise ConfigError([f"(root): not valid JSON: {e}"]) from None
    else:
        data = source
    if not isinstance(data, dict):
        raise ConfigError(["(root): a config must be a JSON object"])

    problems: list[str] = []
    parsed: dict[str, Any] = {}
    positions: dict[str, list[int]] = {}
    for key, value in data.items():
        if key == "partitionUuid":
            if not isinstance(value, str):
                problems.append("partitionUuid: must be a string")
            else:
                parsed[key] = value
        elif key in _SECTIONS:
            if not isinstance(value, list):
                problems.append(f"{key}: must be a list")
                continue
            items, positions[key] = [], []
            for i, item in enumerate(value):
                try:
                    items.append(_SECTIONS[key].model_validate(item))
                    positions[key].append(i)
                except ValidationError as e:
                    problems.extend(_format_errors(e, f"{key}[{i}]"))
            parsed[key] = tuple(items)
        else:
            problems.append(f"{key}: unknown field (expected partitionUuid, pipelines, processDefinitions, "
                            "externalSystems)")
    config = PipelinesConfig.model_validate(parsed)
    problems.extend(check_config(config, positions))
    if problems:
        raise ConfigError(problems)
    return config


def _format_errors(error: ValidationError, prefix: str) -> list[str]:
    out = []
    for err in error.errors(include_url=False):
        path = prefix
        for part in err["loc"]:
            path += f"[{part}]" if isinstance(part, int) else f".{part}"
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            msg = "unknown field"
        elif msg.startswith("Value error, "):
            msg = msg[len("Value error, "):]
        out.append(f"{path}: {msg}")
    return out
