"""The compiled plan: records in, effects out, outcomes back.

``Plan.process(records, now_ms)`` is a generator. It yields lists of effects and
is sent one result per effect; when it returns, its value is one ``Outcome`` per
record. A batch moves through each pipeline stage by stage, so a batch crosses
the effect protocol once per effectful stage (and the pipelines of a config
share those crossings), never once per record.

Every output and body can be written as JSON: an event is checked where it
enters, and each process checks the values it makes (``records.unwritable``,
``state``'s bounds), failing only that record, before any effect for it. So no
adapter meets an encode error while writing its answer.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import lru_cache, partial
from typing import TYPE_CHECKING, Any, Protocol, TypeVar, cast

from orjson import JSONEncodeError, dumps

from agglo_core.codegen import GeneratedRun, generate_run
from agglo_core.connstr import redact
from agglo_core.effects import Effect, EffectFailed, RetryPolicy
from agglo_core.errors import RECORD_FAULTS, ConfigError, RecordError, StageError, describe
from agglo_core.records import PARSED_JSON, Outcome, Record, find_problem

if TYPE_CHECKING:
    from agglo_core.codegen import Emit
    from agglo_core.config import PipelinesConfig
    from agglo_core.ir import Node, PipelineIR, PlanIR, ProcessIR

Driver = Generator[list[Effect], list[Any], Any]
T = TypeVar("T")


@lru_cache(maxsize=16)
def iso_time(now_ms: int) -> str:
    """``now_ms`` as ISO 8601 in UTC, to the millisecond."""
    return datetime.fromtimestamp(now_ms / 1000, tz=UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass(frozen=True, slots=True)
class Invocation:
    """Per-batch facts from outside: the invocation time, and whether state changes are deduplicated."""

    now_ms: int
    dedupe: bool = True

    @classmethod
    def at(cls, now_ms: int, dedupe: bool = True) -> Invocation:
        """One per distinct time: batches of one in the same millisecond share it (a frozen dataclass's
        ``__init__`` costs more than the lookup)."""
        return _invocation(now_ms, dedupe) if cls is Invocation else cls(now_ms, dedupe)

    @property
    def now_iso(self) -> str:
        """Made when an annotation asks for it (most batches never do), once per distinct time."""
        return iso_time(self.now_ms)


@lru_cache(maxsize=16)
def _invocation(now_ms: int, dedupe: bool) -> Invocation:
    return Invocation(now_ms, dedupe)


class Item:
    """A record on its way through one pipeline. ``event`` is None once it stopped or failed."""

    __slots__ = ("record", "event", "error", "transient")

    def __init__(self, record: Record, event: dict) -> None:
        self.record = record
        self.event: dict | None = event
        self.error: tuple[str, str] | None = None
        self.transient = False

    def fail(self, process: str, message: str, transient: bool = False) -> None:
        """``transient``: an outside system failed (retrying may help), not the record's data."""
        self.event = None
        self.error = (process, message)
        self.transient = transient


@dataclass(frozen=True, slots=True)
class StageContext:
    """What a process needs to compile itself for one pipeline: plain data, no config models."""

    ir: PlanIR
    pipeline: str
    step: ProcessIR
    """The process in the IR: its kind, name and parameters."""
    retry: RetryPolicy
    keys: Mapping[str, bytes] = field(default_factory=dict)
    """Private keys (PEM) by the path a config names them with, read by the adapter (entwine's pemPath)."""
    redact: Callable[[str], str] = redact
    """Hides a connection string's secrets before it reaches an output; the adapter passes one that knows
    each connector's secret options (the default guesses them from option names)."""
    codegen: bool = False
    """Conditions of effectful stages are generated code too (``predicate``), not closures."""

    def predicate(self, node: Node | None) -> Callable[[dict], bool] | None:
        """A stage's condition (an IR ``Node``) as a predicate; None when it always holds."""
        from agglo_core.codegen import compile_predicate
        from agglo_core.conditions import compile_node

        return compile_predicate(node) if self.codegen else compile_node(node)

    @property
    def partition(self) -> str:
        return self.ir.partition


class Stage(Protocol):
    """A compiled process: a ``PureStage`` when ``pure``, else an ``EffectfulStage``."""

    name: str
    pure: bool


class PureStage(Stage, Protocol):
    def apply(self, event: dict, inv: Invocation) -> dict | None:
        """The next event, or None to stop this pipeline for this record."""


class EffectfulStage(Stage, Protocol):
    def run(self, items: list[Item], inv: Invocation) -> Driver:
        """Update ``items`` in place, yielding effects as needed."""


@dataclass(frozen=True, slots=True)
class CompiledPipeline:
    name: str
    stages: tuple[Stage, ...]
    segments: tuple[tuple[Stage, ...], ...] = ()
    """What runs without an observer: consecutive pure stages together (one ``GeneratedRun`` each, when
    generated), each effectful stage alone. Empty: computed from ``stages``."""
    single: tuple[tuple[Stage, ...], ...] = ()
    """What runs with an observer: one stage at a time."""

    steps: tuple[Step, ...] = field(init=False)
    """``segments`` as they run: (pure, the function to call, the name an error or observer gives)."""
    single_steps: tuple[Step, ...] = field(init=False)

    def __post_init__(self) -> None:
        if not self.segments:
            object.__setattr__(self, "segments", tuple(_segments(self.stages, True)))
        if not self.single:
            object.__setattr__(self, "single", tuple(_segments(self.stages, False)))
        object.__setattr__(self, "steps", tuple(_step(s) for s in self.segments))
        object.__setattr__(self, "single_steps", tuple(_step(s) for s in self.single))

    @classmethod
    def generated(cls, ir: PipelineIR, stages: tuple[Stage, ...], emitters: Mapping[str, Emit]) -> CompiledPipeline:
        """Each run of pure stages as one generated function (and, for observers, each pure stage as one)."""

        def runs(fuse: bool) -> tuple[tuple[Stage, ...], ...]:
            out: list[tuple[Stage, ...]] = []
            start = since = 0
            for segment in _segments(stages, fuse):
                if segment[0].pure:
                    # An event that left an effectful stage may be held by its effects: copy it first, unless
                    # every effectful stage since the last run hands its events to none (``hands_no_event``).
                    copy = any(not getattr(s, "hands_no_event", False) for s in stages[since:start])
                    out.append((cast(Stage, generate_run(ir, start, segment, emitters, copy)),))
                    since = start + len(segment)
                else:
                    out.append(segment)
                start += len(segment)
            return tuple(out)

        return cls(ir.name, stages, runs(True), runs(False))


def effect_error(result: Any) -> EffectFailed | None:
    return result if isinstance(result, EffectFailed) else None


def gather(drivers: Iterable[Driver]) -> Generator[list[Effect], list[Any], list[Any]]:
    """Run several drivers in lock-step, merging their effects into one crossing per step.

    Returns each driver's return value (or, as a ``StageError``, the record fault it raised), in order.
    """
    drivers = list(drivers)
    returns: list[Any] = [None] * len(drivers)
    pending: list[tuple[int, list[Effect]]] = []

    def advance(i: int, send: list[Any] | None) -> None:
        d = drivers[i]
        try:
            while True:
                effects = next(d) if send is None else d.send(send)
                if effects:
                    pending.append((i, effects))
                    return
                send = []  # nothing to perform: answer at once
        except StopIteration as stop:
            returns[i] = stop.value
        except RECORD_FAULTS as e:
            returns[i] = e if isinstance(e, StageError) else StageError(describe(e))

    for i in range(len(drivers)):
        advance(i, None)
    while pending:
        batch, pending = pending, []
        results = yield [e for _, effects in batch for e in effects]
        pos = 0
        for i, effects in batch:
            advance(i, results[pos:pos + len(effects)])
            pos += len(effects)
    return returns


def run_each(items: list[Item], process: str, make: Callable[[Item], Driver]) -> Driver:
    """Drive one generator per item (for processes whose effects depend on earlier answers).

    Each generator returns the item's new event; a ``StageError`` fails that item only.
    """
    returns = yield from gather(make(it) for it in items)
    for it, value in zip(items, returns, strict=True):
        if isinstance(value, StageError):
            it.fail(process, str(value), value.transient)
        else:
            it.event = value


StageObserver = Callable[[str, str, int, int], None]
"""Told ``(pipeline, process, records in, records out)`` before (out = -1) and after each stage of a batch.

Adapters use it for per-process metrics and traces; the core itself keeps no time.
"""


def _apply_pure(stages: Sequence[PureStage], items: list[Item], inv: Invocation) -> bool:
    """Run consecutive pure stages record by record; True when some record stopped or failed."""
    stopped = False
    for it in items:
        event = it.event
        for stage in stages:
            try:
                event = stage.apply(event, inv)  # type: ignore[arg-type]
            except RECORD_FAULTS as e:
                it.fail(stage.name, describe(e))
                stopped = True
                break
            if event is None:
                it.event = None
                stopped = True
                break
        else:
            it.event = event
    return stopped


Step = tuple[bool, Callable[[list[Item], Invocation], Any], str]


def _step(segment: tuple[Stage, ...]) -> Step:
    """What running ``segment`` calls: a generated run's function, the pure stages in turn, or ``run``."""
    first: Any = segment[0]
    if not first.pure:
        return False, first.run, first.name
    if type(first) is GeneratedRun:
        return True, first.run_items, first.name
    return True, partial(_apply_pure, cast(Sequence[PureStage], segment)), first.name


def _segments(stages: Sequence[Stage], fuse: bool) -> list[tuple[Stage, ...]]:
    """Consecutive pure stages together (when ``fuse``), each effectful stage alone."""
    out: list[tuple[Stage, ...]] = []
    for stage in stages:
        if fuse and stage.pure and out and out[-1][-1].pure:
            out[-1] = (*out[-1], stage)
        else:
            out.append((stage,))
    return out


def _run_pipeline(pipe: CompiledPipeline, items: list[Item], inv: Invocation,
                  observe: StageObserver | None = None) -> Driver:
    live = items
    # Without an observer nobody sees stage boundaries, so pure stages run back to back per record.
    for pure, step, name in (pipe.steps if observe is None else pipe.single_steps):
        if observe is not None:
            observe(pipe.name, name, len(live), -1)
        n_in = len(live)
        if pure:
            if step(live, inv):
                live = [it for it in live if it.event is not None]
        else:
            try:
                yield from step(live, inv)
            except RECORD_FAULTS as e:
                # A fault outside any one record's handling: fail what is left, never drop it silently.
                for it in live:
                    if it.event is not None:
                        it.fail(name, describe(e))
            live = [it for it in live if it.event is not None]
        if observe is not None:
            observe(pipe.name, name, n_in, len(live))
        if not live:
            return


class Plan:
    """An immutable, compiled config. Compile once per process; run many batches through it.

    ``ir`` is what it was built from; ``config`` the validated config, or None for a plan built from an IR
    alone (``from_ir``: a compiled artefact, loaded without the config models).
    """

    def __init__(self, config: PipelinesConfig, keys: Mapping[str, bytes] | None = None,
                 redact: Callable[[str], str] = redact, codegen: bool = True) -> None:
        """A validated config's plan: its IR (``build_ir``), built as ``from_ir`` builds every plan."""
        from agglo_core.ir import build_ir

        self._build(build_ir(config), keys, redact, codegen)
        self.config: PipelinesConfig | None = config

    @classmethod
    def from_ir(cls, ir: PlanIR, keys: Mapping[str, bytes] | None = None, redact: Callable[[str], str] = redact,
                codegen: bool = True) -> Plan:
        """The plan of an IR (a compiled artefact's), without the config models: ``config`` is None."""
        plan = cls.__new__(cls)
        plan._build(ir, keys, redact, codegen)
        plan.config = None
        return plan

    def _build(self, ir: PlanIR, keys: Mapping[str, bytes] | None, redact: Callable[[str], str],
               codegen: bool) -> None:
        from agglo_core.stages import compile_stage, emitters

        self.ir = ir
        self.partition = ir.partition
        pipelines = []
        problems: list[str] = []
        for i, p in enumerate(ir.pipelines):
            stages = []
            for j, step in enumerate(p.processes):
                ctx = StageContext(ir, p.name, step, RetryPolicy(step.retries, step.backoff_ms), keys or {}, redact,
                                   codegen)
                try:
                    stages.append(compile_stage(ctx))
                except ConfigError as e:
                    problems.extend(f"pipelines[{i}].processes[{j}]: {m}" for m in e.problems)
            if problems:
                continue
            if codegen:
                pipelines.append(CompiledPipeline.generated(p, tuple(stages), emitters(p)))
            else:
                pipelines.append(CompiledPipeline(p.name, tuple(stages)))
        if problems:
            raise ConfigError(problems)
        self.pipelines: tuple[CompiledPipeline, ...] = tuple(pipelines)

    def source(self) -> str:
        """The generated Python of this plan, pipeline by pipeline, for people to read (``agglo compile --show``).

        Effectful stages run interpreted between the generated functions; a comment marks each.
        """
        from agglo_core.codegen import safe_name

        out = ["# Generated by agglo from the config: one function per run of pure processes.",
               "# Config values are not in this text: _k0, _k1... name them in each function's namespace.", ""]
        for pipe, ir in zip(self.pipelines, self.ir.pipelines, strict=True):
            out.append(f"# === pipeline {safe_name(ir.name)} ===")
            at = 0
            for segment in pipe.segments:
                stage: Any = segment[0]
                if type(stage) is GeneratedRun:
                    out.append(stage.source)
                    out.extend(f"#   {name} = {note}" for name, note in stage.notes)
                    out.append("")
                    at += len(stage.stages)
                    continue
                for _ in segment:
                    step = ir.processes[at]
                    out.append(f"# {at}: {step.kind} {safe_name(step.name)} runs interpreted (it yields effects)\n")
                    at += 1
        return "\n".join(out)

    def process(self, records: Sequence[Record], now_ms: int, observe: StageObserver | None = None,
                dedupe: bool = True) -> Generator[list[Effect], list[Any], list[Outcome]]:
        """Run a batch; see the module docstring for the protocol.

        With ``dedupe`` (the default) every state change carries its record's mark,
        so a redelivered record changes no state twice; turn it off where a record
        id may legitimately come again with new content.
        """
        inv = Invocation.at(now_ms, dedupe)
        outcomes, valid = _admit(records)
        per_pipeline = [self._items(pipe, valid) for pipe in self.pipelines]
        yield from gather(_run_pipeline(pipe, items, inv, observe) for pipe, items in
                          zip(self.pipelines, per_pipeline, strict=True))
        self._settle(valid, per_pipeline)
        return outcomes

    def run(self, records: Sequence[Record], now_ms: int, perform: Callable[[list[Effect]], list[Any]],
            observe: StageObserver | None = None, dedupe: bool = True) -> list[Outcome]:
        """Run a batch, answering effects with ``perform`` (a list of effects -> a list of results).

        The same crossings as driving ``process``; a config of one pipeline (nothing to merge its
        crossings with) drives that pipeline directly, without ``process``'s and ``gather``'s layers,
        which at a batch of one record are most of what a crossing costs.
        """
        if len(self.pipelines) != 1:
            return _drive(self.process(records, now_ms, observe, dedupe), perform)
        pipe = self.pipelines[0]
        if len(records) == 1 and _refusal(record := records[0]) is None:
            # A call of one record (Pub/Sub push, SQS FIFO, HTTP): the same steps without the lists and zips.
            item = Item(record, {**record.payload, **self._stamp(pipe)})
            _drive(_run_pipeline(pipe, [item], Invocation.at(now_ms, dedupe), observe), perform)
            outcome = Outcome(record)
            _settle_item(outcome, pipe.name, item)
            return [outcome]
        outcomes, valid = _admit(records)
        items = self._items(pipe, valid)
        _drive(_run_pipeline(pipe, items, Invocation.at(now_ms, dedupe), observe), perform)
        self._settle(valid, (items,))
        return outcomes

    def _stamp(self, pipe: CompiledPipeline) -> dict[str, str]:
        """What every event entering ``pipe`` carries: where it runs."""
        return {"internal:partitionID": self.partition, "internal:name": pipe.name}

    def _items(self, pipe: CompiledPipeline, valid: list[Outcome]) -> list[Item]:
        """Each valid record's event as it enters ``pipe``: the payload stamped with where it runs."""
        stamp = self._stamp(pipe)
        return [Item(o.record, {**o.record.payload, **stamp}) for o in valid]

    def _settle(self, valid: list[Outcome], per_pipeline: Iterable[list[Item]]) -> None:
        """Each pipeline's output or error onto its record's outcome."""
        for pipe, items in zip(self.pipelines, per_pipeline, strict=True):
            for o, it in zip(valid, items, strict=True):
                _settle_item(o, pipe.name, it)


def _settle_item(outcome: Outcome, pipeline: str, item: Item) -> None:
    """What ``pipeline`` made of the record: its output, or its error."""
    if item.event is not None:
        outcome.outputs.append((pipeline, item.event))
    elif item.error is not None:
        outcome.errors.append(RecordError(outcome.record.id, pipeline, item.error[0], item.error[1], item.transient))


def _refusal(record: Record) -> str | None:
    """Why a record's event may not enter the pipelines (None: it may).

    Found before any effect: an event no output or body could hold fails alone, here. One dumps decides;
    only a refused event, or one with a null, is walked. A record ``parsed_record`` made from JSON text
    carries the proof that it can be written and is not serialised again.
    """
    payload = record.payload
    if type(payload) is not dict:
        return "an event must be a JSON object"
    if record.proof is PARSED_JSON:
        return None
    try:
        problem = find_problem(payload) if b"null" in dumps(payload) else None
    except JSONEncodeError as err:
        problem = find_problem(payload) or str(err)
    return None if problem is None else f"the event cannot be written as JSON: {problem}"


def _admit(records: Sequence[Record]) -> tuple[list[Outcome], list[Outcome]]:
    """An outcome per record, and those whose event may enter the pipelines (the others fail here)."""
    outcomes = [Outcome(r) for r in records]
    valid = []
    for o in outcomes:
        problem = _refusal(o.record)
        if problem is None:
            valid.append(o)
        else:
            o.errors.append(RecordError(o.record.id, None, None, problem))
    return outcomes, valid


def _drive(driver: Generator[list[Effect], list[Any], T], perform: Callable[[list[Effect]], list[Any]]) -> T:
    """Answer ``driver``'s effects with ``perform`` until it returns; its return value.

    An empty list of effects is answered at once, as ``gather`` does, without calling ``perform``.
    """
    try:
        effects = next(driver)
        while True:
            effects = driver.send(perform(effects) if effects else [])
    except StopIteration as stop:
        value: T = stop.value
        return value


def compile_plan(config: PipelinesConfig | str | bytes | dict, keys: Mapping[str, bytes] | None = None,
                 redact: Callable[[str], str] = redact, codegen: bool = True) -> Plan:
    """Load (if needed) and compile a config. Raises ``ConfigError`` listing every problem.

    ``keys``: the PEM private keys the config names by path (entwine), read by the caller. ``redact``: see
    ``StageContext.redact``. ``codegen``: runs of pure stages run as generated code (``agglo_core.codegen``);
    False runs the interpreted stages, the reference the generated code is held equal to.
    """
    from agglo_core.config import PipelinesConfig, load_config

    if not isinstance(config, PipelinesConfig):
        config = load_config(config)
    return Plan(config, keys, redact, codegen)
