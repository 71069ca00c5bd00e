"""Firestore as the key-value store: ``firestore:project=P,collection=C[,database=D]``.

The GCP-native state store. Each key is a document of collection ``C`` (the key
percent-encoded, since document ids may not contain ``/``); a state item's
fields are the document's fields. Every effect is one Firestore transaction: it
reads the item (and the marks of the records it carries), writes the new state
and the new marks (documents ``mark/<mark>`` with an ``expires`` time for a TTL
policy, remembering what the change wrote or the join's answer), and Firestore
retries it when another instance wrote in between — so sums, max and min, joins
(adding a member and closing the join) and dedupe are atomic without any lock.
A join without a deadline carries an ``expires`` time, ``joinTtl`` after its last
add: a TTL policy on ``expires`` deletes it, and until then it counts as gone when
read, so nothing depends on the policy being there.
``FIRESTORE_EMULATOR_HOST`` is honoured by the client library.
"""

from __future__ import annotations

import datetime
import time
from collections.abc import Callable, Iterator
from typing import Any, TypeVar
from urllib.parse import quote, unquote

import orjson

from agglo_core.effects import ApplyDeltas, DeltasApplied, JoinAdd, JoinState, Put
from agglo_core.state import add_to_join, apply_deltas, apply_parts, join_from_memo, join_memo
from handlers.connectors.base import OPTIMISTIC_ATTEMPTS, BaseConnector, Contended
from handlers.connectors.kv import DEFAULT_JOIN_TTL_S, JOIN_TTL, MARK_PREFIX, mark_ttl_s
from handlers.connectors.spec import ClientLibrary, ConnectorSpec, Option

T = TypeVar("T")

BODY = "json"
AFTER = "after"  # on a mark: what the record's change wrote, to answer a redelivery with


def _doc_id(key: str) -> str:
    return quote(key, safe="")


class FirestoreKV(BaseConnector):
    """One transaction per effect; different keys in parallel, the same key in order."""

    capabilities = frozenset({"Put", "ApplyDeltas", "JoinAdd"})
    optimistic_attempts = OPTIMISTIC_ATTEMPTS

    def __init__(self, opts: dict[str, str], parallelism: int = 8) -> None:
        self.project = opts.get("project") or None
        self.collection = opts["collection"]
        self.database = opts.get("database") or None
        self.join_ttl_s = float(opts.get("joinTtl", DEFAULT_JOIN_TTL_S))
        self._client: Any = None
        self.concurrency = parallelism

    @property
    def client(self) -> Any:
        if self._client is None:
            from google.cloud import firestore  # lazy: only where Firestore is used

            self._client = firestore.Client(project=self.project, database=self.database)
        return self._client

    def _ref(self, key: str) -> Any:
        return self.client.collection(self.collection).document(_doc_id(key))

    def describe(self) -> str:
        return f"Firestore collection {self.collection}"

    def put(self, e: Put, body: bytes) -> None:
        self._ref(e.key).set({BODY: body.decode()})

    def apply_deltas(self, e: ApplyDeltas) -> DeltasApplied:
        return self._in_transaction(self._apply, e)

    def join_add(self, e: JoinAdd) -> JoinState:
        return self._in_transaction(self._join_add, e)

    def _in_transaction(self, step: Callable[[Any, Any], T], e: Any) -> T:
        """``step`` in a transaction that Firestore retries when another writer got in first, a bounded
        number of times (a retried transaction keeps its place in line, so no backoff is needed)."""
        from google.api_core.exceptions import Aborted
        from google.cloud import firestore

        try:
            return firestore.transactional(step)(self.client.transaction(max_attempts=self.optimistic_attempts), e)
        except ValueError as err:
            if isinstance(err.__cause__, Aborted):  # the library's "failed to commit in N attempts"
                raise Contended(f"item {e.key!r}: still contended after {self.optimistic_attempts} attempts "
                                "(other writers won each time); retry later") from err
            raise

    def _apply(self, transaction: Any, e: ApplyDeltas) -> DeltasApplied:
        ref = self._ref(e.key)
        marks = [(mark, self._ref(MARK_PREFIX + mark)) for mark, _ in e.marks]
        snapshot = ref.get(transaction=transaction)  # every read before any write
        remembered = {}
        for mark, mref in marks:
            known = mref.get(transaction=transaction)
            if _live(known):
                remembered[mark] = known.to_dict().get(AFTER) or {}
        before = (snapshot.to_dict() or {}) if snapshot.exists else {}
        if not e.marks:
            transaction.set(ref, apply_deltas(before, e.deltas))
            return DeltasApplied(before)
        after, wrote = apply_parts(before, e.marks, remembered)
        transaction.set(ref, after)
        expires = _expires()
        for mark, mref in marks:
            if mark not in remembered:
                transaction.set(mref, {"expires": expires, AFTER: wrote[mark]})
        return DeltasApplied(before, frozenset(remembered), remembered)

    def _join_add(self, transaction: Any, e: JoinAdd) -> JoinState:
        ref = self._ref(e.key)
        mref = self._ref(MARK_PREFIX + e.mark) if e.mark else None
        if mref is not None:
            known = mref.get(transaction=transaction)
            if _live(known) and AFTER in known.to_dict():
                return join_from_memo(known.to_dict()[AFTER])
        snapshot = ref.get(transaction=transaction)
        # A join past its expiry is gone, whether or not the TTL policy has deleted it yet.
        join, state = add_to_join(snapshot.to_dict() if _live(snapshot) else None, e)
        if join is None:
            if snapshot.exists:
                transaction.delete(ref)
        else:
            if join["deadline"] is None:
                join["expires"] = _expires(self.join_ttl_s)
            transaction.set(ref, join)
        if mref is not None:
            transaction.set(mref, {"expires": _expires(), AFTER: join_memo(state)})
        return state

    def get(self, key: str) -> Any:
        snapshot = self._ref(key).get()
        return _value(snapshot.to_dict()) if snapshot.exists else None

    def scan(self, prefix: str = "") -> Iterator[tuple[str, Any]]:
        found = []
        for snapshot in self.client.collection(self.collection).stream():
            key = unquote(snapshot.id)
            if key.startswith(prefix):
                found.append((key, _value(snapshot.to_dict())))
        yield from sorted(found, key=lambda kv: kv[0])


def _value(data: dict) -> Any:
    return orjson.loads(data[BODY]) if BODY in data else data


def _expires(ttl_s: float | None = None) -> datetime.datetime:
    """When a mark (or, given its ``ttl_s``, a join without a deadline) written now expires."""
    return datetime.datetime.fromtimestamp(time.time() + (mark_ttl_s() if ttl_s is None else ttl_s),
                                           tz=datetime.UTC)


def _live(snapshot: Any) -> bool:
    if not snapshot.exists:
        return False
    expires = snapshot.to_dict().get("expires")
    return expires is None or expires.timestamp() > time.time()


FIRESTORE_CLIENT = ClientLibrary("google.cloud.firestore", "gcp", "google-cloud-firestore>=2.16")

SPECS = (ConnectorSpec(
    "Firestore", ("firestore",), ("ExternalKVStore",), FirestoreKV.capabilities, FIRESTORE_CLIENT,
    "Firestore: one transaction per change (no `GetItems`/`CompareAndPut`, so not for entwine's stream state); "
    "see [Google Cloud Functions](#google-cloud-functions)", lambda ext, opts: FirestoreKV(opts),
    options=(Option("collection", required=True, metavar="C", doc="the collection the items are documents of"),
             Option("project", metavar="P", doc="the project (default: the environment's)"),
             Option("database", metavar="D", doc="the database (default: (default))"), JOIN_TTL)),)
