"""Events POSTed over HTTP (``agglo serve``, the HTTP Cloud Function) -> records with ids.

* With an ``Idempotency-Key``: the record id is ``http:<key>`` (``http:<key>#<n>`` for
  the n-th element of a JSON array), so sending the same request again is the same
  record, whose effects are not performed twice. The key is tied to a fingerprint of
  the body; the same key with another body is a conflict (409), as in Powertools'
  idempotency utility, never a silent overwrite.
* Without one: every request is new data (a fresh id per element): two identical
  clicks count twice.

An element that is not a JSON object, or that agglo cannot serialise again (nesting
past the encoder's limit), is that element's error; the others still run.
"""

from __future__ import annotations

import hashlib
import threading
import uuid
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import orjson

from agglo_core import Outcome
from agglo_core.errors import RecordError
from agglo_core.records import find_problem
from handlers.runtime.settlement import Verdict, http_status
from handlers.sources import TriggerRecord, Unreadable

MAX_KEY_LENGTH = 256


class BadRequest(ValueError):
    """The body as a whole cannot be taken (not JSON, an empty array, a bad key): 400."""


class KeyConflict(ValueError):
    """The ``Idempotency-Key`` was used before with another body: 409."""


@dataclass(frozen=True, slots=True)
class PostedEvent:
    """One element of a POSTed body: its record and, when it can be queued, its JSON bytes."""

    item: TriggerRecord
    body: bytes | None  # None when the element is refused (``item.payload`` is then ``Unreadable``)


def fingerprint(body: bytes) -> str:
    """What a key is tied to: the body byte for byte (a client retrying sends the same bytes)."""
    return hashlib.sha256(body).hexdigest()


def parse_key(raw: str | None) -> str | None:
    if raw is None or raw == "":
        return None
    if len(raw) > MAX_KEY_LENGTH or not raw.isprintable():
        raise BadRequest(f"Idempotency-Key must be at most {MAX_KEY_LENGTH} printable characters")
    return raw


def posted_events(body: bytes, key: str | None) -> tuple[list[PostedEvent], bool]:
    """The records of a POSTed body (one per object, or one per element of an array) and whether it was an
    array (the answer then has one result per element)."""
    try:
        value = orjson.loads(body.removeprefix(b"\xef\xbb\xbf"))  # a UTF-8 BOM some clients put first
    except orjson.JSONDecodeError as e:
        raise BadRequest(f"body is not valid JSON: {e}") from None
    if isinstance(value, list):
        if not value:
            raise BadRequest("body must be a JSON object or a non-empty array of objects")
        prefix = f"http:{key}#" if key else None
        return [_event(f"{prefix}{n}" if prefix else _fresh_id(), e) for n, e in enumerate(value, 1)], True
    if not isinstance(value, dict):
        raise BadRequest("body must be a JSON object or a non-empty array of objects")
    return [_event(f"http:{key}" if key else _fresh_id(), value)], False


def _fresh_id() -> str:
    return f"http:{uuid.uuid4().hex}"


def _event(rid: str, value: object) -> PostedEvent:
    if not isinstance(value, dict):
        return PostedEvent(TriggerRecord(rid, Unreadable("an event must be a JSON object")), None)
    try:
        data = orjson.dumps(value)
    except orjson.JSONEncodeError as e:  # the core's own words for what and where (it refuses the same)
        problem = find_problem(value) or str(e)
        return PostedEvent(TriggerRecord(rid, Unreadable(f"the event cannot be written as JSON: {problem}")), None)
    return PostedEvent(TriggerRecord(rid, value), data)


def accept(body: bytes, key_header: str | None, keys: KeyMemory) -> tuple[list[PostedEvent], bool]:
    """``posted_events`` for a request whose key is remembered in ``keys``: raises ``BadRequest`` (400) and
    ``KeyConflict`` (409)."""
    key = parse_key(key_header)
    events, array = posted_events(body, key)
    if key is not None:
        keys.claim(key, body)
    return events, array


class KeyMemory:
    """The last ``capacity`` keys and the fingerprints of their bodies, in this process only.

    A key older than the last ``capacity`` keys, or seen by another instance, is not
    remembered: a different body under it is then taken as new data for that key.
    """

    def __init__(self, capacity: int = 10_000) -> None:
        self.capacity = capacity
        self._seen: OrderedDict[str, str] = OrderedDict()
        self._lock = threading.Lock()

    def claim(self, key: str, body: bytes) -> None:
        """Remember ``key`` for ``body``; raise ``KeyConflict`` if it was remembered for another body."""
        print_ = fingerprint(body)
        with self._lock:
            known = self._seen.get(key)
            if known is not None and known != print_:
                raise KeyConflict(conflict_message(key))
            self._seen[key] = print_
            self._seen.move_to_end(key)
            while len(self._seen) > self.capacity:
                self._seen.popitem(last=False)


def conflict_message(key: str) -> str:
    return f"Idempotency-Key {key!r} was already used with a different body"


def http_answer(outcomes: list[Outcome], verdicts: list[Verdict], array: bool) -> tuple[int, dict[str, Any]]:
    """The status and JSON answer for a POST's records: every output and error, and for an array one result
    per element in order. A record whose outputs cannot be serialised fails alone (422)."""
    results, statuses = [], []
    for outcome, verdict in zip(outcomes, verdicts, strict=True):
        rid = outcome.record.id
        result = {"id": rid, "outputs": [e for _, e in outcome.outputs], "errors": [e.to_dict() for e in outcome.errors]}
        status = http_status([verdict])
        try:
            orjson.dumps({"results": [result]})  # as deep as the answer holds it: the encoder's limit counts levels
        except orjson.JSONEncodeError as e:
            error = RecordError(rid, None, None, f"the outputs cannot be serialised as JSON: {e}")
            result, status = {"id": rid, "outputs": [], "errors": [error.to_dict()]}, 422
        results.append(result)
        statuses.append(status)
    status = 503 if 503 in statuses else 422 if 422 in statuses else 200
    answer: dict[str, Any] = {"outputs": [e for r in results for e in r["outputs"]],
                              "errors": [e for r in results for e in r["errors"]]}
    if array:
        answer["results"] = results
    return status, answer
