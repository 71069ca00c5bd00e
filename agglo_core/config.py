"""binge's pipeline config (``pipeline.proto`` in its JSON form) as pydantic models.

Field names, enum spellings and nesting follow the proto exactly, so binge's
configs load unchanged. ``load_config`` validates everything at once and raises
one ``ConfigError`` that lists every problem with its JSON path.
"""

from __future__ import annotations

import enum
import json
import uuid
from typing import Annotated, Any, ClassVar

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainValidator,
    SerializeAsAny,
    StrictBool,
    StrictInt,
    StrictStr,
    ValidationError,
    field_validator,
    model_validator,
)

from agglo_core.errors import ConfigError


class ConfigModel(BaseModel):
    """The base of every config model: unknown fields are errors, values are immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class ProtoEnum(enum.Enum):
    """A proto enum: JSON gives the name (or, as protojson allows, the number).

    Each enum says what its values are (``what``), for error messages; its zero
    member (``UnknownComparator``…) means "not set".
    """

    number: int
    what: ClassVar[str]

    def __init_subclass__(cls, what: str = "", **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls.what = what

    def __new__(cls, name: str, number: int) -> ProtoEnum:
        obj = object.__new__(cls)
        obj._value_ = name
        obj.number = number
        return obj

    @classmethod
    def _missing_(cls, value: object) -> Any:
        if isinstance(value, int) and not isinstance(value, bool):
            for member in cls:
                if member.number == value:
                    return member
        return None

    @classmethod
    def __get_pydantic_core_schema__(cls, source: Any, handler: Any) -> Any:
        from pydantic_core import core_schema

        return core_schema.no_info_plain_validator_function(
            cls.parse, serialization=core_schema.plain_serializer_function_ser_schema(lambda m: m.value))

    @classmethod
    def parse(cls, value: Any) -> ProtoEnum:
        """A member by name or number; otherwise an error that quotes the value and the choices."""
        if isinstance(value, cls):
            return value
        member = cls.__members__.get(value) if isinstance(value, str) else cls._missing_(value)
        if member is not None:
            return member
        # The zero members (UnknownComparator…) mean "not set": accepted, never offered.
        choices = ", ".join(m.value for m in cls if m.number)
        shown = repr(value) if isinstance(value, str | int | float) else f"a {type(value).__name__}"
        raise ValueError(f"{shown} is not {cls.what}; expected one of {choices}")

    @classmethod
    def __get_pydantic_json_schema__(cls, core_schema: Any, handler: Any) -> dict[str, Any]:
        return {"title": cls.__name__, "anyOf": [
            {"type": "string", "enum": [m.value for m in cls]},
            {"type": "integer", "enum": [m.number for m in cls]},
        ]}




class ExternalType(ProtoEnum, what="an external type"):
    ExternalUnknown = "ExternalUnknown", 0
    ExternalKVStore = "ExternalKVStore", 1
    ExternalObjectStore = "ExternalObjectStore", 2
    ExternalPubSub = "ExternalPubSub", 3
    ExternalHttp = "ExternalHttp", 4
    ExternalLocalFile = "ExternalLocalFile", 5
    ExternalSearchIndex = "ExternalSearchIndex", 6


class AggregationType(ProtoEnum, what="an aggregation type"):
    AggUnknown = "AggUnknown", 0
    AggSum = "AggSum", 1
    AggMax = "AggMax", 2
    AggMin = "AggMin", 3
    AggAvg = "AggAvg", 4
    AggCount = "AggCount", 5
    AggDiscreteHistogram = "AggDiscreteHistogram", 6


class TransformationType(ProtoEnum, what="a transformation type"):
    TransformUnknown = "TransformUnknown", 0
    TransformSum = "TransformSum", 1
    TransformCopy = "TransformCopy", 2
    TransformMapRegex = "TransformMapRegex", 3
    TransformMapAdd = "TransformMapAdd", 4
    TransformMapMult = "TransformMapMult", 5
    TransformCount = "TransformCount", 6
    TransformLeftFold = "TransformLeftFold", 7
    TransformRightFold = "TransformRightFold", 8
    TransformMap = "TransformMap", 9
    TransformPopHead = "TransformPopHead", 10
    TransformPopTail = "TransformPopTail", 11


class ExistsOperator(ProtoEnum, what="an exists operator"):
    UnknownExists = "UnknownExists", 0
    Exists = "Exists", 1
    NotExists = "NotExists", 2


class UnaryOperator(ProtoEnum, what="a unary operator"):
    """binge's names, which read the wrong way round: Inversion is logical not (! in a condition's text, on a
    boolean), LogicalNot is bitwise not (~, on an integer), Negation is - (on a number)."""

    UnknownUnary = "UnknownUnary", 0
    Negation = "Negation", 3
    Inversion = "Inversion", 4
    LogicalNot = "LogicalNot", 5


class BinaryOperator(ProtoEnum, what="a binary operator"):
    UnknownBinary = "UnknownBinary", 0
    Addition = "Addition", 6
    Subtract = "Subtract", 7
    Multiply = "Multiply", 8
    Divide = "Divide", 9
    Power = "Power", 10
    Modulus = "Modulus", 11
    RightShift = "RightShift", 12
    LeftShift = "LeftShift", 13
    Or = "Or", 14
    And = "And", 15
    Xor = "Xor", 16


class LogicalOperator(ProtoEnum, what="a logical operator"):
    UnknownLogical = "UnknownLogical", 0
    LogicalAnd = "LogicalAnd", 17
    LogicalOr = "LogicalOr", 18


class ComparatorOperator(ProtoEnum, what="a comparator"):
    UnknownComparator = "UnknownComparator", 0
    GreaterThan = "GreaterThan", 19
    LessThan = "LessThan", 20
    GreaterThanOrEqual = "GreaterThanOrEqual", 21
    LessThanOrEqual = "LessThanOrEqual", 22
    Equal = "Equal", 23
    NotEqual = "NotEqual", 24
    RegexMatch = "RegexMatch", 25
    RegexNotMatch = "RegexNotMatch", 26





def _strict_number(value: Any) -> int | float:
    if type(value) is int or type(value) is float:
        return value
    raise ValueError("must be a number")


# One type, one error message; ints stay ints so large values keep their precision.
Number = Annotated[int | float, PlainValidator(_strict_number, json_schema_input_type=float)]


def _int64(value: Any) -> Any:
    """protojson writes int64 fields as strings; accept both forms."""
    if isinstance(value, str) and value.lstrip("-").isdigit() and value.isascii():
        return int(value)
    return value


Int64 = Annotated[StrictInt, BeforeValidator(
    _int64, json_schema_input_type=int | Annotated[str, Field(pattern=r"^-?[0-9]+$")])]


def exactly_one(model: BaseModel, fields: tuple[str, ...], what: str, allow_none: bool = False) -> None:
    present = [f for f in fields if getattr(model, f) is not None]
    if len(present) > 1 or (not present and not allow_none):
        got = ", ".join(present) if present else "none"
        raise ValueError(f"{what} must set exactly one of {'|'.join(fields)} (got {got})")


# --- conditions -------------------------------------------------------------


class Variable(ConfigModel):
    name: StrictStr = ""


class Operand(ConfigModel):
    expression: Expression | None = None
    variable: Variable | None = None
    literal: StrictStr | None = None
    numeric: Number | None = None

    @model_validator(mode="after")
    def _oneof(self) -> Operand:
        exactly_one(self, ("expression", "variable", "literal", "numeric"), "an operand")
        return self


class BooleanExpression(ConfigModel):
    value: StrictBool = False


class ComparatorExpression(ConfigModel):
    lhs: Operand | None = None
    rhs: Operand | None = None
    op: ComparatorOperator = ComparatorOperator.UnknownComparator


class LogicalExpression(ConfigModel):
    lhs: Operand | None = None
    rhs: Operand | None = None
    op: LogicalOperator = LogicalOperator.UnknownLogical


class BinaryExpression(ConfigModel):
    lhs: Operand | None = None
    rhs: Operand | None = None
    op: BinaryOperator = BinaryOperator.UnknownBinary


class UnaryExpression(ConfigModel):
    rhs: Operand | None = None
    op: UnaryOperator = UnaryOperator.UnknownUnary


class ExistsOperation(ConfigModel):
    key: StrictStr = ""
    op: ExistsOperator = ExistsOperator.UnknownExists


class Expression(ConfigModel):
    boolean: BooleanExpression | None = None
    comparator: ComparatorExpression | None = None
    logical: LogicalExpression | None = None
    binary: BinaryExpression | None = None
    unary: UnaryExpression | None = None
    # Not in binge: one exists check inside an expression (what exists(path) in a condition's text needs).
    exists: ExistsOperation | None = None

    @model_validator(mode="after")
    def _oneof(self) -> Expression:
        exactly_one(self, ("boolean", "comparator", "logical", "binary", "unary", "exists"), "an expression")
        return self


class ExistsExpression(ConfigModel):
    ops: tuple[ExistsOperation, ...] = ()


class Condition(ConfigModel):
    """An absent or empty condition (``{}``) is always true."""

    expression: Expression | None = None
    exists: ExistsExpression | None = None

    @model_validator(mode="after")
    def _oneof(self) -> Condition:
        exactly_one(self, ("expression", "exists"), "a condition", allow_none=True)
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


class ProcessDefinition(ConfigModel):
    """A process definition: exactly one process kind set.

    Its fields, one per kind, come from the process specs: ``agglo_core.processes.definition_model()``
    builds the model ``load_config`` validates with. This base is what every definition answers.
    """

    @model_validator(mode="after")
    def _oneof(self) -> ProcessDefinition:
        exactly_one(self, tuple(type(self).model_fields), "a process definition")
        return self

    @property
    def kind(self) -> str:
        return next(k for k in type(self).model_fields if getattr(self, k) is not None)

    @property
    def body(self) -> Any:
        return getattr(self, self.kind)

    @property
    def name(self) -> str:
        return str(self.body.name)


# --- pipelines and externals --------------------------------------------------


class RetryStrategy(ConfigModel):
    numRetries: StrictInt = Field(0, ge=0)
    initialBackOffMs: Int64 = Field(0, ge=0)


class ProcessInstrumentation(ConfigModel):
    enableTracing: StrictBool = False
    latency: StrictBool = False
    counter: StrictBool = False


class PipelineProcess(ConfigModel):
    name: StrictStr = ""
    retryStrategy: RetryStrategy = Field(default_factory=RetryStrategy)
    instrumentation: ProcessInstrumentation = Field(default_factory=ProcessInstrumentation)


class Checkpoint(ConfigModel):
    outputConnectorRef: StrictStr = ""
    # binge's own test configs spell a checkpoint this way; accepted so they load unchanged.
    outputConnector: StrictStr = ""
    externalType: ExternalType | None = None


class Pipeline(ConfigModel):
    name: StrictStr = ""
    processes: tuple[PipelineProcess, ...] = ()
    checkpoint: Checkpoint | None = None
    enableTracing: StrictBool = False
    enableMetrics: StrictBool = False


class External(ConfigModel):
    externalType: ExternalType = ExternalType.ExternalUnknown
    name: StrictStr = ""
    connectionString: StrictStr = ""

    @field_validator("connectionString")
    @classmethod
    def _strip(cls, v: str) -> str:
        return v.strip()


class PipelinesConfig(ConfigModel):
    partitionUuid: StrictStr = ""
    pipelines: tuple[Pipeline, ...] = ()
    processDefinitions: tuple[SerializeAsAny[ProcessDefinition], ...] = ()  # dumped as the kinds they are
    externalSystems: tuple[External, ...] = ()

    def process(self, name: str) -> ProcessDefinition:
        return next(d for d in self.processDefinitions if d.name == name)

    def external(self, name: str) -> External:
        return next(e for e in self.externalSystems if e.name == name)


# --- loading -------------------------------------------------------------------



def load_config(source: str | bytes | dict) -> PipelinesConfig:
    """Parse and validate a config given as JSON text or an already-parsed dict.

    Each list element is validated on its own so that one broken process does not
    hide the problems of the others; then the cross-references are checked.
    """
    # Late: the process models live beside their processes, which import this module.
    from agglo_core.processes import definition_model
    from agglo_core.validation import check_config

    sections: dict[str, Any] = {"pipelines": Pipeline, "processDefinitions": definition_model(),
                                "externalSystems": External}

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
        elif key in sections:
            if not isinstance(value, list):
                problems.append(f"{key}: must be a list")
                continue
            items, positions[key] = [], []
            for i, item in enumerate(value):
                try:
                    items.append(sections[key].model_validate(item))
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
        elif isinstance(err.get("input"), str | int | float | bool):
            msg += f", got {json.dumps(err['input'])}"  # the value, so the reader sees what was wrong
        out.append(f"{path}: {msg}")
    return out
