"""aggregator: sum, max, min, avg, count or histogram of a field, per group, in a KV store.

The config side (models, checks, lint, docs); the stage is ``agglo_core.stages.aggregator``.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

from pydantic import StrictBool, StrictStr

from agglo_core.config import AggregationType, ConditionField, ConfigModel
from agglo_core.processes.spec import CheckContext, ExternalRef, Finding, LintContext, Problem, ProcessSpec
from agglo_core.stages import aggregator as stage


class Aggregation(ConfigModel):
    key: StrictStr = ""
    aggregationType: AggregationType = AggregationType.AggUnknown
    groupByKeys: tuple[StrictStr, ...] = ()


class Aggregator(ConfigModel):
    name: StrictStr = ""
    condition: ConditionField | None = None
    stateStore: StrictStr = ""
    aggregation: Aggregation | None = None
    asyncCheckpoint: StrictBool = False
    forwardState: StrictBool = False


def _check(d: Aggregator, ctx: CheckContext) -> Iterator[Problem]:
    agg = d.aggregation
    if agg is None:
        yield "aggregation", "must be set"
        return
    if not agg.key:
        yield "aggregation.key", "must not be empty"
    if agg.aggregationType.value == "AggUnknown":
        yield "aggregation.aggregationType", "must be set"
    for i, g in enumerate(agg.groupByKeys):
        if not g:
            yield f"aggregation.groupByKeys[{i}]", "must not be empty"


# Field names whose values are unique per event: ids, times, hashes (a user id is not: per-user state is normal).
_PER_EVENT = frozenset({"id", "uuid", "guid", "nonce", "timestamp", "ts", "time", "datetime", "hash", "githash", "sha"})
_PER_EVENT_SUFFIXES = ("uuid", "guid", "timestamp", "eventid", "messageid", "requestid", "traceid", "spanid")


def _per_event(field: str) -> bool:
    last = re.split(r"[.:]", field)[-1]
    flat = last.lower().replace("_", "").replace("-", "")
    return flat in _PER_EVENT or flat.endswith(_PER_EVENT_SUFFIXES) or re.search(r"[a-z]At$", last) is not None


def _lint(d: Aggregator, ctx: LintContext) -> Iterator[Finding]:
    agg = d.aggregation
    assert agg is not None
    for i, group in enumerate(agg.groupByKeys):
        if _per_event(group):
            yield Finding(f"aggregation.groupByKeys[{i}]", "aggregator-high-cardinality",
                          f"grouping by '{group}' (unique per event: an id, a time or a hash) keeps one state item "
                          "per event: state grows without bound and no group aggregates anything")
    if agg.aggregationType.value == "AggDiscreteHistogram" and _per_event(agg.key):
        yield Finding("aggregation.key", "aggregator-high-cardinality",
                      f"a histogram of '{agg.key}' (unique per event: an id, a time or a hash) gains a bucket per "
                      "event and "
                      f"grows without bound{'' if agg.groupByKeys else ' in a single state item (no group key)'}")


def _describe(d: Aggregator) -> list[str]:
    agg = d.aggregation
    if agg is None:
        return []
    return [f"{agg.aggregationType.value} of {agg.key}" + (f" by {', '.join(agg.groupByKeys)}" if agg.groupByKeys else "")]


_DOC = """\
keep a running `AggSum`, `AggMax`, `AggMin`, `AggAvg`,
`AggCount` or `AggDiscreteHistogram` of the field `key`, per value of
`groupByKeys` (dotted paths; a missing group value is `"nil"`), in the KV
store `stateStore`. With `forwardState`, the output carries the state of this
event's group of this aggregator after this event (binge forwards every group of
every aggregator of the pipeline; see
[Where agglo differs from binge](#where-agglo-differs-from-binge)):

```json
{"aggregator": {"name": "SumSomeNum", "stateStore": "State", "forwardState": true,
  "aggregation": {"key": "someNum", "aggregationType": "AggSum", "groupByKeys": ["region"]}}}
```

gives `"internal:aggregation:<pipeline>": {"someNum:AggSum": {"eu": {"value": 1234}}}`.
Leaves are `{"value": x}` (sum, max, min, count), `{"sum", "num", "value"}`
(avg) or `{"buckets": {"<value>": count}}` (histogram: strings as they are,
other scalars as their JSON text). Sum, max, min and avg skip events whose
field is missing or not a number; count counts events that have the field.
Skipped events, and events whose condition is false, pass through unchanged.
State changes only through commutative deltas: the deltas of a batch are
combined so that each distinct state key is written once per batch, yet every
output shows exactly the state after its own event, computed the way the store
computes it, so the batch's last output for a key equals what the store holds
to the last bit: with dedupe (everywhere but a plain `agglo run`) the store
applies each record's change in turn; without, it adds the batch's combined
change, and each output shows the stored state plus the batch's changes so far.
(Float sums are not associative, so without dedupe they can differ in the last
bits from adding one event at a time.)
"""

SPEC = ProcessSpec(
    kind="aggregator", doc=_DOC, proto_field=2, model=Aggregator, compile=stage.compile,
    summary="Sum, max, min, average, count or histogram of a field, per group, kept in a key-value store by "
            "commutative deltas; with `forwardState` the event carries its group's state after it.",
    externals=(ExternalRef("stateStore", "ExternalKVStore", "key-value store", frozenset({"ApplyDeltas"})),),
    check=_check, lint=_lint, describe=_describe, ignored=("asyncCheckpoint",),
)
