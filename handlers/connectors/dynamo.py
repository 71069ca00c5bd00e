"""DynamoDB as the key-value store: ``dynamo:tableName=T[,region=R][,endpoint=URL]``.

binge's ``prefixLength`` option is accepted and has no effect. The table has a
string partition key ``pk``. Each state change is one ``UpdateItem``: ``ADD`` for
sums and counts, a conditional ``SET`` for max and min, answered with the item as
it was (``ALL_OLD``). State fields are stored as top-level attributes named
``f:<field>`` so that no field can collide with the key.

Changes with dedupe marks are one ``TransactWriteItems``: the new state,
conditional on the item's version ``v``, and one item per mark
(``mark/<mark>``, expiring through the table's TTL attribute ``ttl``),
conditional on not existing yet, remembering what the change wrote. A join is an
item with a string set ``members`` and a ``deadline``; adding a member (and
closing the join when the add decides it) is one transaction of the same kind. A
join without a deadline has no ``deadline`` attribute and expires through the same
TTL attribute ``ttl``, ``joinTtl`` after its last add; since DynamoDB deletes
expired items only eventually, a join past its ``ttl`` counts as gone when read.

Entwine's substream entries are JSON items like tee bodies; its head check
(``CompareAndPut``) is one ``TransactWriteItems``: the head conditional on its
``uuid`` attribute, the new entries conditional on not existing.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import orjson

from agglo_core.effects import (
    ApplyDeltas,
    CompareAndPut,
    DeltasApplied,
    GetItems,
    JoinAdd,
    JoinState,
    Put,
)
from agglo_core.state import (
    BOUNDS,
    REFUSED,
    STATE_INT_MAX,
    STATE_INT_MIN,
    STATE_LIMIT,
    StateOverflow,
    add_to_join,
    apply_deltas,
    apply_parts,
    join_from_memo,
    join_memo,
)
from handlers.connectors.aws import AWS_OPTIONS, BOTO3, AwsConnector, client_for, require_region
from handlers.connectors.base import OPTIMISTIC_ATTEMPTS, Conflict, Contended, Refused, backoff_s, optimistic
from handlers.connectors.kv import DEFAULT_JOIN_TTL_S, JOIN_TTL, MARK_PREFIX, mark_ttl_s
from handlers.connectors.spec import ConnectorSpec, Option

FIELD = "f:"
KEY = "pk"
VERSION = "v"
TTL = "ttl"
AFTER = "after"  # on a mark item: what the record's change wrote (JSON), to answer a redelivery with
_MAX_MARKS = 99  # a transaction holds at most 100 writes: the state and 99 marks


def to_dynamo(value: Any) -> Any:
    if isinstance(value, float):
        return Decimal(repr(value))
    return value


def _add_bounds(amount: int | float) -> tuple[Decimal, Decimal]:
    """The values a field may hold for ``field + amount`` to stay within the state bounds."""
    if type(amount) is int:
        return Decimal(STATE_INT_MIN - amount), Decimal(STATE_INT_MAX - amount)
    limit, step = Decimal(repr(STATE_LIMIT)), Decimal(repr(amount))
    return -limit - step, limit - step


def from_dynamo(value: Any) -> Any:
    if isinstance(value, Decimal):
        if value == value.to_integral_value() and STATE_INT_MIN <= value <= STATE_INT_MAX:
            return int(value)
        return float(value)
    if isinstance(value, set):
        return {from_dynamo(v) for v in value}
    return value


def _conditional_failure(err: Exception) -> bool:
    return getattr(err, "response", {}).get("Error", {}).get("Code") == "ConditionalCheckFailedException"


class DynamoKV(AwsConnector):
    """One request (or transaction) per effect: different keys in parallel, the same key in order."""

    capabilities = frozenset({"Put", "ApplyDeltas", "JoinAdd", "GetItems", "CompareAndPut"})
    optimistic_attempts = OPTIMISTIC_ATTEMPTS

    def __init__(self, opts: dict[str, str], parallelism: int = 8) -> None:
        self.table = opts["tableName"]
        self._opts = require_region(opts, self.describe())
        self.join_ttl_s = float(opts.get("joinTtl", DEFAULT_JOIN_TTL_S))
        self.concurrency = parallelism

    @property
    def _client(self) -> Any:
        return client_for("dynamodb", self._opts)

    def describe(self) -> str:
        return f"DynamoDB table {self.table}"

    def apply_deltas(self, e: ApplyDeltas) -> DeltasApplied:
        return self._apply_marked(e) if e.marks else DeltasApplied(self._apply(e))

    def join_add(self, e: JoinAdd) -> JoinState:
        return self._join_add(e)

    def put(self, e: Put, body: bytes) -> None:
        self._put_item(e.key, {"json": body.decode()})

    def get_items(self, e: GetItems) -> tuple:
        return self._get_items(e.keys)

    def compare_and_put(self, e: CompareAndPut, values: tuple[bytes, ...]) -> bool:
        return self._compare_and_put(e, values)

    def _put_item(self, key: str, attrs: dict[str, str]) -> None:
        item = {KEY: {"S": key}, **{k: {"S": v} for k, v in attrs.items()}}
        self._client.put_item(TableName=self.table, Item=item)

    def _apply(self, e: ApplyDeltas) -> dict:
        from boto3.dynamodb.types import TypeSerializer

        ser = TypeSerializer()
        names, values, adds, sets, conds = {}, {}, [], [], []
        for i, (field, (op, amount)) in enumerate(e.deltas.items()):
            names[f"#f{i}"] = FIELD + field
            values[f":v{i}"] = ser.serialize(to_dynamo(amount))
            if op == "add":
                adds.append(f"#f{i} :v{i}")
                # The sum stays within the bounds every store keeps: the store refuses it, not just the type.
                low, high = _add_bounds(amount)
                values[f":lo{i}"], values[f":hi{i}"] = {"N": str(low)}, {"N": str(high)}
                conds.append(f"(attribute_not_exists(#f{i}) OR #f{i} BETWEEN :lo{i} AND :hi{i})")
            else:
                sets.append(f"#f{i} = :v{i}")
                conds.append(f"(attribute_not_exists(#f{i}) OR #f{i} {'<' if op == 'max' else '>'} :v{i})")
        names["#v"], values[":one"] = VERSION, {"N": "1"}
        adds.append("#v :one")  # every write moves the version, so marked (optimistic) writes see it
        expression = " ".join(part for part in (
            "ADD " + ", ".join(adds), "SET " + ", ".join(sets) if sets else "") if part)
        request: dict[str, Any] = {
            "TableName": self.table, "Key": {KEY: {"S": e.key}}, "UpdateExpression": expression,
            "ExpressionAttributeNames": names, "ExpressionAttributeValues": values, "ReturnValues": "ALL_OLD"}
        if conds:
            # max/min: only write when the new value wins; several fields all have to win.
            request["ConditionExpression"] = " AND ".join(conds)
            request["ReturnValuesOnConditionCheckFailure"] = "ALL_OLD"
        try:
            answer = self._client.update_item(**request)
            old = answer.get("Attributes", {})
        except Exception as err:
            if not _conditional_failure(err):
                raise
            old = getattr(err, "response", {}).get("Item") or self._get(e.key)
            if all(op == "add" for op, _ in e.deltas.values()):  # only the bounds could refuse it
                apply_deltas(fields_from_item(old), e.deltas)  # raises StateOverflow naming the field
                raise StateOverflow(f"a sum in item {e.key!r} would go {BOUNDS}: {REFUSED}") from None
            if len(conds) > 1:  # some fields may still win: apply them one at a time
                for field, delta in e.deltas.items():
                    self._apply(ApplyDeltas(e.store, e.key, {field: delta}))
        return fields_from_item(old)

    def _apply_marked(self, e: ApplyDeltas) -> DeltasApplied:
        """Deltas with dedupe marks: one transaction writes the new state and the marks, or nothing.

        Optimistic: read the item, compute the new state, write it only if the item's
        version is unchanged and no mark exists yet; on a conflict read again, and
        drop the parts whose mark was there (they were applied by an earlier delivery;
        their mark items remember the fields they wrote, which are read back once).
        """
        parts = list(e.marks)
        duplicates: set[str] = set()
        first_before: dict | None = None  # the item as the first chunk that got in found it
        before: dict = {}
        conflicts = 0
        while parts:
            chunk, rest = parts[:_MAX_MARKS], parts[_MAX_MARKS:]
            item = self._get(e.key)
            before = fields_from_item(item)
            after, wrote = apply_parts(before, tuple(chunk))
            try:
                self._client.transact_write_items(TransactItems=[
                    self._state_write(e.key, item, after),
                    *(self._mark_write(mark, {AFTER: {"S": orjson.dumps(wrote[mark]).decode()}})
                      for mark, _ in chunk)])
            except Exception as err:
                reasons = getattr(err, "response", {}).get("CancellationReasons")
                if not reasons:
                    raise
                seen = {chunk[i - 1][0] for i, r in enumerate(reasons)
                        if i > 0 and r.get("Code") == "ConditionalCheckFailed"}
                duplicates |= seen
                parts = [p for p in parts if p[0] not in seen]
                conflicts += 1  # the state changed under us, or some marks were known: read again
                if conflicts >= self.optimistic_attempts:
                    raise Contended(f"item {e.key!r}: still contended after {conflicts} attempts "
                                    "(other writers won each time); retry later") from None
                time.sleep(backoff_s(conflicts - 1))
                continue
            if first_before is None:
                first_before = before
            parts = rest
        # (Over 99 new marks on one key, another writer may get in between two chunks; the records of
        # the later chunks are still counted once, but their outputs show the state from first_before.)
        return DeltasApplied(first_before if first_before is not None else before, frozenset(duplicates),
                             self._remembered(duplicates))

    def _remembered(self, marks: set[str]) -> dict[str, dict]:
        """What the mark items of parts applied before remember (only read on a redelivery)."""
        remembered = {}
        for mark in marks:
            stored = self._get(MARK_PREFIX + mark).get(AFTER)
            remembered[mark] = orjson.loads(stored["S"]) if stored else {}
        return remembered

    def _state_write(self, key: str, item: dict, after: dict) -> dict:
        from boto3.dynamodb.types import TypeSerializer

        ser = TypeSerializer()
        version = int(item.get(VERSION, {"N": "0"})["N"])
        names = {"#v": VERSION, **{f"#f{i}": FIELD + k for i, k in enumerate(after)}}
        values = {":next": {"N": str(version + 1)},
                  **{f":f{i}": ser.serialize(to_dynamo(v)) for i, v in enumerate(after.values())}}
        sets = ", ".join(["#v = :next", *(f"#f{i} = :f{i}" for i in range(len(after)))])
        if version:
            values[":v"] = {"N": str(version)}
        return {"Update": {"TableName": self.table, "Key": {KEY: {"S": key}}, "UpdateExpression": f"SET {sets}",
                           "ConditionExpression": "#v = :v" if version else "attribute_not_exists(#v)",
                           "ExpressionAttributeNames": names, "ExpressionAttributeValues": values}}

    def _mark_write(self, mark: str, memo: dict) -> dict:
        now = int(time.time())
        return {"Put": {"TableName": self.table,
                        "Item": {KEY: {"S": MARK_PREFIX + mark}, TTL: {"N": str(now + mark_ttl_s())}, **memo},
                        "ConditionExpression": "attribute_not_exists(#k) OR #t < :now",
                        "ExpressionAttributeNames": {"#k": KEY, "#t": TTL},
                        "ExpressionAttributeValues": {":now": {"N": str(now)}}}}

    def _get(self, key: str) -> dict:
        return self._client.get_item(TableName=self.table, Key={KEY: {"S": key}}, ConsistentRead=True).get("Item", {})

    def _get_items(self, keys: tuple[str, ...]) -> tuple:
        found: dict[str, Any] = {}
        unique = list(dict.fromkeys(keys))
        for i in range(0, len(unique), 100):  # BatchGetItem's limit
            request = {self.table: {"Keys": [{KEY: {"S": k}} for k in unique[i:i + 100]], "ConsistentRead": True}}
            rounds = 0
            while request:
                answer = self._client.batch_get_item(RequestItems=request)
                for item in answer["Responses"].get(self.table, []):
                    found[item[KEY]["S"]] = value_of_item(item)
                request = answer.get("UnprocessedKeys") or {}
                if request:  # throttled: back off, a bounded number of times
                    rounds += 1
                    if rounds >= self.optimistic_attempts:
                        raise RuntimeError(f"DynamoDB left keys unread after {rounds} rounds (throttled); "
                                           "retry later")
                    time.sleep(backoff_s(rounds - 1))
        return tuple(found.get(k) for k in keys)

    def _compare_and_put(self, e: CompareAndPut, values: tuple[bytes, ...]) -> bool:
        absent = set(e.absent)
        head = [w for w in e.writes if w[0] == e.key]
        if len(e.writes) + len(absent - {k for k, _ in e.writes}) + (0 if head else 1) > 100:
            raise Refused("a DynamoDB transaction holds at most 100 items")
        items: list[dict] = []
        for (key, value), data in zip(e.writes, values, strict=True):
            item = {KEY: {"S": key}, "json": {"S": data.decode()}}
            put: dict[str, Any] = {"TableName": self.table, "Item": item}
            if key == e.key:
                item["uuid"] = {"S": str(value.get("uuid", ""))}
                put.update(self._head_condition(e.expected))
            elif key in absent:
                put["ConditionExpression"] = "attribute_not_exists(#k)"
                put["ExpressionAttributeNames"] = {"#k": KEY}
            items.append({"Put": put})
        if not head:
            items.append({"ConditionCheck": {"TableName": self.table, "Key": {KEY: {"S": e.key}},
                                             **self._head_condition(e.expected)}})
        items += [{"ConditionCheck": {"TableName": self.table, "Key": {KEY: {"S": k}},
                                      "ConditionExpression": "attribute_not_exists(#k)",
                                      "ExpressionAttributeNames": {"#k": KEY}}}
                  for k in sorted(absent - {k for k, _ in e.writes})]
        try:
            self._client.transact_write_items(TransactItems=items)
        except Exception as err:
            reasons = getattr(err, "response", {}).get("CancellationReasons") or []
            if any(r.get("Code") == "ConditionalCheckFailed" for r in reasons):
                return False
            raise
        return True

    @staticmethod
    def _head_condition(expected: str | None) -> dict:
        if expected is None:
            return {"ConditionExpression": "attribute_not_exists(#k)", "ExpressionAttributeNames": {"#k": KEY}}
        return {"ConditionExpression": "#u = :u", "ExpressionAttributeNames": {"#u": "uuid"},
                "ExpressionAttributeValues": {":u": {"S": expected}}}

    def _join_add(self, e: JoinAdd) -> JoinState:
        """Optimistic, like marked deltas: read the join (and the record's mark), decide, and write
        the join (or delete it, when this add closes it) conditional on its version, together with
        the mark remembering the answer; on a conflict read again (a bounded number of times)."""
        return optimistic(lambda: self._join_add_once(e), f"join {e.key!r}", self.optimistic_attempts)

    def _join_add_once(self, e: JoinAdd) -> JoinState:
        if e.mark:
            known = self._get(MARK_PREFIX + e.mark)
            if known and int(known[TTL]["N"]) >= time.time() and AFTER in known:
                return join_from_memo(orjson.loads(known[AFTER]["S"]))
        item = self._get(e.key)
        now = time.time()
        if not item or (TTL in item and int(item[TTL]["N"]) < now):
            join = None  # none, or one without a deadline that expired (not yet deleted by DynamoDB): a new join
        else:
            join = {"members": item["members"]["SS"], "deadline": int(item["deadline"]["N"]) if "deadline" in item
                    else None}
        after, state = add_to_join(join, e)
        version = int(item.get(VERSION, {"N": "0"})["N"])
        names, values = {"#v": VERSION}, {}
        if version:
            condition, values[":v"] = "#v = :v", {"N": str(version)}
        else:
            condition = "attribute_not_exists(#v)"
        key = {KEY: {"S": e.key}}
        if after is None and not item:
            write: dict = {"ConditionCheck": {"Key": key}}
        elif after is None:
            write = {"Delete": {"Key": key}}
        else:
            stored = {**key, VERSION: {"N": str(version + 1)}, "members": {"SS": after["members"]}}
            if after["deadline"] is None:  # no deadline: forgotten joinTtl after this add
                stored[TTL] = {"N": str(math.ceil(now + self.join_ttl_s))}
            else:
                stored["deadline"] = {"N": str(after["deadline"])}
            write = {"Put": {"Item": stored}}
        body = next(iter(write.values()))
        body.update(TableName=self.table, ConditionExpression=condition, ExpressionAttributeNames=names)
        if values:
            body["ExpressionAttributeValues"] = values
        writes = [write]
        if e.mark:
            writes.append(self._mark_write(e.mark, {AFTER: {"S": orjson.dumps(join_memo(state)).decode()}}))
        try:
            self._client.transact_write_items(TransactItems=writes)
        except Exception as err:
            if not getattr(err, "response", {}).get("CancellationReasons"):
                raise
            raise Conflict from None  # another instance changed the join, or delivered this record
        return state

    def get(self, key: str) -> Any:
        """The stored value at ``key``: a tee'd body, or a state item's fields (for tests and tools)."""
        item = self._get(key)
        return value_of_item(item) if item else None

    def scan(self, prefix: str = "") -> Iterator[tuple[str, Any]]:
        found = []
        for page in self._client.get_paginator("scan").paginate(
                TableName=self.table, ConsistentRead=True, FilterExpression="begins_with(#k, :p)",
                ExpressionAttributeNames={"#k": KEY}, ExpressionAttributeValues={":p": {"S": prefix}}):
            found += [(item[KEY]["S"], value_of_item(item)) for item in page.get("Items", [])]
        yield from sorted(found, key=lambda kv: kv[0])


def value_of_item(item: dict) -> Any:
    """A tee'd body (JSON), or a state item's fields."""
    return orjson.loads(item["json"]["S"]) if "json" in item else fields_from_item(item)


def fields_from_item(item: dict) -> dict:
    """A state item's fields (the attributes ``f:<field>``), as numbers."""
    from boto3.dynamodb.types import TypeDeserializer

    de = TypeDeserializer()
    return {k[len(FIELD):]: from_dynamo(de.deserialize(v)) for k, v in item.items() if k.startswith(FIELD)}


SPECS = (ConnectorSpec(
    "DynamoDB", ("dynamo",), ("ExternalKVStore",), DynamoKV.capabilities, BOTO3,
    "DynamoDB; table with a string partition key `pk`. Each state change is one `UpdateItem` (`ADD`, or a "
    "conditional `SET` for max/min) answered with the old item; distinct keys of a batch are written in parallel",
    lambda ext, opts: DynamoKV(opts),
    options=(Option("tableName", required=True, metavar="T", doc="the table"), *AWS_OPTIONS,
             Option("prefixLength", type="int", metavar="N", doc="binge's; accepted and ignored"), JOIN_TTL)),)
