"""Firestore as the key-value store: ``firestore:project=P,collection=C[,database=D]``.

The GCP-native state store. Each key is a document of collection ``C`` (the key
percent-encoded, since document ids may not contain ``/``); a state item's
fields are the document's fields. Every effect is one Firestore transaction: it
reads the item (and the marks of the records it carries), writes the new state
and the new marks (documents ``mark/<mark>`` with an ``expires`` time for a TTL
policy, remembering what the change wrote or the join's answer), and Firestore
retries it when another instance wrote in between — so sums, max and min, joins
(adding a member and closing the join) and dedupe are atomic without any lock.
``FIRESTORE_EMULATOR_HOST`` is honoured by the client library.
"""

from __future__ import annotations

import datetime
import time
from typing import Any
from urllib.parse import quote

from agglo_core.effects import ApplyDeltas, DeltasApplied, JoinAdd, JoinState, Put
from agglo_core.state import add_to_join, apply_deltas, apply_parts, join_from_memo, join_memo
from handlers.connectors import options_factory
from handlers.connectors.kv import MARK_PREFIX, mark_ttl_s, perform_by_key

BODY = "json"
AFTER = "after"  # on a mark: what the record's change wrote, to answer a redelivery with


def _doc_id(key: str) -> str:
    return quote(key, safe="")


class FirestoreKV:
    def __init__(self, opts: dict[str, str], parallelism: int = 8) -> None:
        self.project = opts.get("project") or None
        self.collection = opts["collection"]
        self.database = opts.get("database") or None
        self._client: Any = None
        self._parallelism = parallelism

    @property
    def client(self) -> Any:
        if self._client is None:
            from google.cloud import firestore  # lazy: only where Firestore is used

            self._client = firestore.Client(project=self.project, database=self.database)
        return self._client

    def _ref(self, key: str) -> Any:
        return self.client.collection(self.collection).document(_doc_id(key))

    def perform(self, effects: list[Any]) -> list[Any]:
        """One transaction per effect; different keys in parallel, the same key in order."""
        return perform_by_key(effects, self._one, self._parallelism)

    def _one(self, e: Any) -> Any:
        from google.cloud import firestore

        if isinstance(e, Put):
            import orjson

            self._ref(e.key).set({BODY: orjson.dumps(e.body).decode()})
            return None
        transaction = self.client.transaction()
        step = {ApplyDeltas: self._apply, JoinAdd: self._join_add}.get(type(e))
        if step is None:
            raise TypeError(f"Firestore cannot perform {type(e).__name__}")
        return firestore.transactional(step)(transaction, e)

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
        join, state = add_to_join(snapshot.to_dict() if snapshot.exists else None, e)
        if join is None:
            if snapshot.exists:
                transaction.delete(ref)
        else:
            transaction.set(ref, join)
        if mref is not None:
            transaction.set(mref, {"expires": _expires(), AFTER: join_memo(state)})
        return state

    def get(self, key: str) -> Any:
        snapshot = self._ref(key).get()
        if not snapshot.exists:
            return None
        data = snapshot.to_dict()
        if BODY in data:
            import orjson

            return orjson.loads(data[BODY])
        return data


def _expires() -> datetime.datetime:
    return datetime.datetime.fromtimestamp(time.time() + mark_ttl_s(), tz=datetime.UTC)


def _live(snapshot: Any) -> bool:
    if not snapshot.exists:
        return False
    expires = snapshot.to_dict().get("expires")
    return expires is None or expires.timestamp() > time.time()


def register(registry: Any) -> None:
    registry.register("ExternalKVStore", "firestore", options_factory(FirestoreKV, "collection"))
