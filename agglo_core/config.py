"""binge's pipeline config (``pipeline.proto`` in its JSON form) as pydantic models.

Field names, enum spellings and nesting follow the proto exactly, so binge's
configs load unchanged. ``load_config`` validates everything at once and raises
one ``ConfigError`` that lists every problem with its JSON path.
"""

from __future__ import annotations

import enum
import json
import uuid
from typing import Annotated, Any

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainValidator,
    StrictBool,
    StrictInt,
    StrictStr,
    ValidationError,
    field_validator,
    model_validator,
)

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

    @classmethod
    def __get_pydantic_json_schema__(cls, core_schema: Any, handler: Any) -> dict[str, Any]:
        return {"title": cls.__name__, "anyOf": [
            {"type": "string", "enum": [m.value for m in cls]},
            {"type": "integer", "enum": [m.number for m in cls]},  # type: ignore[attr-defined]
        ]}


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



def _number(value: Any) -> int | float:
    if type(value) is int or type(value) is float:
        return value
    raise ValueError("must be a number")


# One type, one error message; ints stay ints so large values keep their precision.
Number = Annotated[int | float, PlainValidator(_number, json_schema_input_type=float)]


def _int64(value: Any) -> Any:
    """protojson writes int64 fields as strings; accept both forms."""
    if isinstance(value, str) and value.lstrip("-").isdigit() and value.isascii():
        return int(value)
    return value


Int64 = Annotated[StrictInt, BeforeValidator(
    _int64, json_schema_input_type=int | Annotated[str, Field(pattern=r"^-?[0-9]+$")])]


def _exactly_one(model: BaseModel, fields: tuple[str, ...], what: str, allow_none: bool = False) -> None:
    present = [f for f in fields if getattr(model, f) is not None]
    if len(present) > 1 or (not present and not allow_none):
        got = ", ".join(present) if present else "none"
        raise ValueError(f"{what} must set exactly one of {'|'.join(fields)} (got {got})")


# --- conditions -------------------------------------------------------------


class Variable(_Model):
    name: StrictStr = ""


class Operand(_Model):
    expression: Expression | None = None
    variable: Variable | None = None
    literal: StrictStr | None = None
    numeric: Number | None = None

    @model_validator(mode="after")
    def _oneof(self) -> Operand:
        _exactly_one(self, ("expression", "variable", "literal", "numeric"), "an operand")
        return self


class BooleanExpression(_Model):
    value: StrictBool = False


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


class ExistsOperation(_Model):
    key: StrictStr = ""
    op: ExistsOperator = ExistsOperator("UnknownExists")  # type: ignore[valid-type]


class Expression(_Model):
    boolean: BooleanExpression | None = None
    comparator: ComparatorExpression | None = None
    logical: LogicalExpression | None = None
    binary: BinaryExpression | None = None
    unary: UnaryExpression | None = None
    # Not in binge: one exists check inside an expression (what exists(path) in a condition's text needs).
    exists: ExistsOperation | None = None

    @model_validator(mode="after")
    def _oneof(self) -> Expression:
        _exactly_one(self, ("boolean", "comparator", "logical", "binary", "unary", "exists"), "an expression")
        return self


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


def _condition_text(value: Any) -> Any:
    """A condition given as text is parsed into the AST; a syntax error names its line and column."""
    if not isinstance(value, str):
        return value
    from agglo_core.condition_syntax import parse_condition  # late: only configs that use text need it

    return parse_condition(value)


ConditionField = Annotated[Condition, BeforeValidator(_condition_text, json_schema_input_type=Condition | str)]


# --- processes ---------------------------------------------------------------


class Annotation(_Model):
    fieldKey: StrictStr = ""
    value: StrictStr = ""
    condition: ConditionField | None = None


class Annotator(_Model):
    name: StrictStr = ""
    annotations: tuple[Annotation, ...] = ()


class Aggregation(_Model):
    key: StrictStr = ""
    aggregationType: AggregationType = AggregationType("AggUnknown")  # type: ignore[valid-type]
    groupByKeys: tuple[StrictStr, ...] = ()


class Aggregator(_Model):
    name: StrictStr = ""
    condition: ConditionField | None = None
    stateStore: StrictStr = ""
    aggregation: Aggregation | None = None
    asyncCheckpoint: StrictBool = False
    forwardState: StrictBool = False


class Completion(_Model):
    joinKeys: tuple[StrictStr, ...] = ()
    timeoutMs: Int64 = 0


class Completer(_Model):
    name: StrictStr = ""
    condition: ConditionField | None = None
    stateStore: StrictStr = ""
    completion: Completion | None = None


class Filter(_Model):
    name: StrictStr = ""
    regex: StrictStr = ""
    keepMatched: StrictBool = False


class Runnable(_Model):
    pathToExec: StrictStr = ""
    cmdArgs: tuple[StrictStr, ...] = ()


class Job(_Model):
    runnable: Runnable | None = None


class Spawner(_Model):
    name: StrictStr = ""
    condition: ConditionField | None = None
    delayInMs: Int64 = 0
    doSync: StrictBool = False
    job: Job | None = None


class Tee(_Model):
    name: StrictStr = ""
    condition: ConditionField | None = None
    additionalBody: dict[str, Any] = Field(default_factory=dict)
    transformerRef: StrictStr = ""
    outputConnectorRef: StrictStr = ""


class Continuation(_Model):
    name: StrictStr = ""
    condition: ConditionField | None = None


class PathArgs(_Model):
    path: StrictStr = ""


class ValueArgs(_Model):
    value: Number = 0


class MapRegexArgs(_Model):
    regex: StrictStr = ""
    replace: StrictStr = ""


class Transformation(_Model):
    condition: ConditionField | None = None
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
    sourceField: StrictStr = ""
    targetField: StrictStr = ""
    transformation: Transformation | None = None


class Transformer(_Model):
    name: StrictStr = ""
    specs: tuple[TransformerSpec, ...] = ()
    forwardInputFields: StrictBool = False


class Entwine(_Model):
    name: StrictStr = ""
    streamStateStore: StrictStr = ""
    objectStore: StrictStr = ""
    pemPath: StrictStr = ""
    subStreamID: StrictStr = ""
    tickerEndpoint: StrictStr = ""
    tickerInterval: StrictInt = 0
    condition: ConditionField | None = None


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
    numRetries: StrictInt = Field(0, ge=0)
    initialBackOffMs: Int64 = Field(0, ge=0)


class ProcessInstrumentation(_Model):
    enableTracing: StrictBool = False
    latency: StrictBool = False
    counter: StrictBool = False


class PipelineProcess(_Model):
    name: StrictStr = ""
    retryStrategy: RetryStrategy = RetryStrategy()
    instrumentation: ProcessInstrumentation = ProcessInstrumentation()


class Checkpoint(_Model):
    outputConnectorRef: StrictStr = ""
    # binge's own test configs spell a checkpoint this way; accepted so they load unchanged.
    outputConnector: StrictStr = ""
    externalType: ExternalType | None = None  # type: ignore[valid-type]


class Pipeline(_Model):
    name: StrictStr = ""
    processes: tuple[PipelineProcess, ...] = ()
    checkpoint: Checkpoint | None = None
    enableTracing: StrictBool = False
    enableMetrics: StrictBool = False


class External(_Model):
    externalType: ExternalType = ExternalType("ExternalUnknown")  # type: ignore[valid-type]
    name: StrictStr = ""
    connectionString: StrictStr = ""

    @field_validator("connectionString")
    @classmethod
    def _strip(cls, v: str) -> str:
        return v.strip()


class PipelinesConfig(_Model):
    partitionUuid: StrictStr = ""
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
            # json, not orjson: integers beyond 64 bits stay exact.
            data = json.loads(source)
        except (ValueError, UnicodeDecodeError) as e:
            raise ConfigError([f"(root): not valid JSON: {e}"]) from None
    else:
        data = source
    if not isinstance(data, dict):
        raise ConfigError(["(root): a config must be a JSON object"])

    problems: list[str] = []
    parsed: dict[str, Any] = {}
    positions: dict[str, list[int]] = {}
    invalid_names: set[str] = set()
    problems.extend(_check_partition(data.get("partitionUuid")))
    for key, value in data.items():
        if key == "partitionUuid":
            parsed[key] = value if isinstance(value, str) else ""
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
                    invalid_names.update(_names_in(item))
            parsed[key] = tuple(items)
        else:
            problems.append(f"{key}: unknown field (expected partitionUuid, pipelines, processDefinitions, "
                            "externalSystems)")
    config = PipelinesConfig.model_validate(parsed)
    problems.extend(check_config(config, positions, invalid_names))
    if problems:
        raise ConfigError(problems)
    return config


def _check_partition(value: Any) -> list[str]:
    if value is None:
        return ["partitionUuid: must be set (a UUID naming this deployment's state)"]
    if not isinstance(value, str):
        return ["partitionUuid: must be a string"]
    try:
        uuid.UUID(value)
    except ValueError:
        return [f"partitionUuid: {value!r} is not a UUID"]
    return []


def _names_in(item: Any) -> set[str]:
    """Names a definition that failed validation declares, so references to it are not reported too."""
    if not isinstance(item, dict):
        return set()
    bodies = [item, *(v for v in item.values() if isinstance(v, dict))]
    return {b["name"] for b in bodies if isinstance(b.get("name"), str)}


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
