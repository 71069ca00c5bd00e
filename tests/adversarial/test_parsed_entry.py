"""Records made by ``parsed_record`` skip the core's entry check; hostile JSON text must not get past it.

``parsed_record`` proves a payload writable from its text (orjson's parser makes nothing it cannot write,
and nesting too deep needs more open brackets than the text has) so the core does not serialise it at
entry. For hostile lines beside good ones, the outcomes must be those of the same payloads entering
unproven (checked by one ``orjson.dumps``), and every body handed to a store must serialise.
"""

from __future__ import annotations

from typing import Any

import orjson
from builders import without_uuids
from hypothesis import given, settings
from hypothesis import strategies as st
from test_hostile_events import good_events, hostile_config, hostile_lines, nested, parseable

from agglo_core import Put, Record, compile_plan
from agglo_core.records import MAX_DEPTH, PARSED_JSON, parsed_record
from handlers.connectors.memory import MemoryStore

PLAN = compile_plan(orjson.dumps(hostile_config()))


def run(records: list[Record]) -> list[Any]:
    store = MemoryStore("parsed-entry")

    def perform(effects: list[Any]) -> list[Any]:
        for e in effects:
            if type(e) is Put:
                orjson.dumps(e.body)  # what a store that writes JSON does: it must never fail here
        return store.perform(effects)

    outcomes = PLAN.run(records, 0, perform)
    return [(o.record.id, without_uuids(o.outputs), [e.to_dict() for e in o.errors]) for o in outcomes]


@settings(max_examples=60, deadline=None)
@given(hostile=hostile_lines(), at=st.integers(0, 12))
def test_proven_records_have_the_outcomes_of_checked_ones(hostile: list[bytes], at: int) -> None:
    good = [orjson.dumps(e) for e in good_events(12)]
    lines = good[:at] + parseable(hostile) + good[at:]
    proven = [parsed_record(f"r{i}", line) for i, line in enumerate(lines)]
    checked = [Record(f"r{i}", orjson.loads(line)) for i, line in enumerate(lines)]
    assert run(proven) == run(checked)
    for one_p, one_c in zip(proven, checked, strict=True):  # a call of one record takes its own path
        assert run([one_p]) == run([one_c])


@given(depth=st.integers(1, 1000),  # orjson reads up to 1024 levels
        pad=st.text(alphabet="[{ab", max_size=20))
def test_the_proof_is_given_only_below_the_nesting_json_output_allows(depth: int, pad: str) -> None:
    text = b'{"p": ' + orjson.dumps(pad) + b', "deep": ' + nested(depth) + b"}"
    record = parsed_record("r", text)
    opened = text.count(b"{") + text.count(b"[")
    assert (record.proof is PARSED_JSON) == (opened <= MAX_DEPTH)
    if record.proof is PARSED_JSON:
        orjson.dumps(record.payload)  # what was proven holds
    assert record == Record("r", orjson.loads(text))  # the proof is not part of what a record is


def test_an_event_too_deep_still_fails_alone() -> None:
    deep = b'{"id": "deep", "d": ' + nested(300) + b"}"
    [(rid, outputs, errors)] = run([parsed_record("deep", deep)])
    assert not outputs and "nested deeper than 254 levels" in errors[0]["error"]


def test_aws_sources_carry_the_proof_only_for_what_they_parsed() -> None:
    import base64

    from handlers.sources.aws import kinesis_items, sns_items, sqs_items

    shallow, deep = b'{"a": [1, {"b": 2}]}', b'{"d": ' + nested(260) + b"}"
    bodies = [shallow, deep, b"[1]", b"not json"]
    sqs = sqs_items({"Records": [{"messageId": f"m{i}", "body": b.decode()} for i, b in enumerate(bodies)]})
    sns = sns_items({"Records": [{"Sns": {"MessageId": f"s{i}", "Message": b.decode()}} for i, b in enumerate(bodies)]})
    kinesis = kinesis_items({"Records": [{"eventID": f"k{i}", "kinesis": {
        "sequenceNumber": str(i), "data": base64.b64encode(b).decode()}} for i, b in enumerate(bodies)]})
    for items in (sqs, sns, kinesis):
        records = [it.record("test") for it in items]
        assert [r.proof is PARSED_JSON for r in records] == [True, False, False, False]
        assert records[0].payload == orjson.loads(shallow) and records[1].payload == orjson.loads(deep)
    wrapped = orjson.dumps({"Type": "Notification", "TopicArn": "arn:t", "Message": deep.decode()}).decode()
    [via_sns] = sqs_items({"Records": [{"messageId": "w", "body": wrapped}]})
    assert via_sns.record("test").proof is None  # the unwrapped message's own proof, not the envelope's
