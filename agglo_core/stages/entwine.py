"""entwine's stage: store each matching event, append it to the substream's signed chain, anchor to the ticker.

Per batch: the events go to the object store under deterministic keys (one
crossing); then, round by round, messages are appended to the substream with a
``CompareAndPut`` on its head (the first new message's previous id must still
be the head, and its uuid must not be in the chain yet) and, every
``tickerInterval`` messages, the chain since the last anchor is sent to the
ticker as a proof and its receipt becomes the anchor of the messages after it.

Redelivery: a message's uuid derives from the record id, so a redelivered
record finds its message already in the chain and reports it instead of
appending it twice. A crash after storing an object but before appending leaves
an object no message points to; the redelivery rewrites it and appends. A crash
after appending but before anchoring is repaired by the next append, which
anchors first. Concurrent instances lose the head check, re-read and retry; no
lock is taken.

Store layout (in ``streamStateStore``), for substream S: ``entwine/S/head``
(a ``Head``), ``entwine/S/idx/<n>`` (message n), ``entwine/S/uuid/<uuid>``
(``{"idx": n}``).
"""

from __future__ import annotations

from collections.abc import Mapping

from agglo_core.effects import CompareAndPut, EffectFailed, GetItems, Put, TickerCall
from agglo_core.entwine.chain import Head, append
from agglo_core.entwine.crypto import BadKey, Signer, object_digest
from agglo_core.errors import ConfigError
from agglo_core.ids import IdMaker
from agglo_core.pipeline import Driver, Invocation, Item, StageContext, effect_error

OUTPUT = "internal:entwine:output"
MAX_APPEND = 40
"""Messages appended in one head check at most (a DynamoDB transaction holds 100 items: two per message)."""
MAX_CONFLICTS = 50
"""Head checks lost in a row (to other instances) before the remaining records fail, to be redelivered."""


def stream_keys(sub_stream: str) -> tuple[str, str, str]:
    """The head key and the prefixes of index and uuid keys of a substream in its state store."""
    base = f"entwine/{sub_stream}/"
    return base + "head", base + "idx/", base + "uuid/"


class _Pending:
    __slots__ = ("item", "uuid", "key", "digest")

    def __init__(self, item: Item, uuid: str, key: str, digest: str) -> None:
        self.item, self.uuid, self.key, self.digest = item, uuid, key, digest


class EntwineStage:
    pure = False

    def __init__(self, ctx: StageContext, signer: Signer) -> None:
        d = ctx.step.params
        self.name = d["name"]
        self._cond = ctx.predicate(d["condition"])
        self._store, self._objects, self._retry = d["streamStateStore"], d["objectStore"], ctx.retry
        self._sub_stream = sub_stream = d["subStreamID"]
        self._endpoint = d["tickerEndpoint"]
        self._interval = max(1, d["tickerInterval"])
        self._signer = signer
        self._connection = ctx.redact(ctx.ir.external(self._objects).connection_string)
        self._object_ids = IdMaker(ctx.partition, ctx.pipeline, self.name, "entwine-object")
        self._message_ids = IdMaker(ctx.partition, ctx.pipeline, self.name, sub_stream, "entwine-message")
        self._head_key, self._idx_prefix, self._uuid_prefix = stream_keys(sub_stream)

    def _ticker(self, method: str, path: str, body: dict | None = None) -> TickerCall:
        return TickerCall(self._endpoint, method, path, body, self._retry)

    def run(self, items: list[Item], inv: Invocation) -> Driver:
        cond = self._cond
        chosen = [it for it in items if cond is None or cond(it.event)]  # type: ignore[arg-type]
        if not chosen:
            return
        keys = [self._object_ids(it.record.id) for it in chosen]
        stored = yield [Put(self._objects, k, it.event, self._retry)  # type: ignore[arg-type]
                        for k, it in zip(keys, chosen, strict=True)]
        pending = []
        for it, key, result in zip(chosen, keys, stored, strict=True):
            if (err := effect_error(result)) is not None:
                it.fail(self.name, f"could not store the event in '{self._objects}': {err}", transient=True)
            else:
                pending.append(_Pending(it, self._message_ids(it.record.id), key, object_digest(it.event)))
        conflicts = 0
        while pending and conflicts < MAX_CONFLICTS:
            error, settled, won = yield from self._round(pending, inv)
            if error is not None:
                for p in pending:
                    p.item.fail(self.name, error, transient=True)
                return
            pending = [p for p in pending if p not in settled]
            conflicts = 0 if won else conflicts + 1
        for p in pending:
            p.item.fail(self.name, f"substream {self._sub_stream}: the head kept moving ({MAX_CONFLICTS} "
                                   "conflicting writers in a row); retry later", transient=True)

    def _round(self, pending: list[_Pending], inv: Invocation) -> Driver:
        """One append (and anchor, when due). Returns (error, the pending records settled, won the head)."""
        look = pending[:self._interval]
        [values] = yield [GetItems(self._store, (self._head_key, *(self._uuid_prefix + p.uuid for p in look)),
                                   self._retry)]
        if (err := effect_error(values)) is not None:
            return f"could not read substream state in '{self._store}': {err}", [], False
        raw_head, known = values[0], values[1:]
        present = [(p, k) for p, k in zip(look, known, strict=True) if k is not None]
        if present:
            # Records whose message is already in the chain (redeliveries) report it and append nothing.
            [messages] = yield [GetItems(self._store, tuple(self._idx_prefix + str(k["idx"]) for _, k in present),
                                         self._retry)]
            if (err := effect_error(messages)) is not None:
                return f"could not read substream messages in '{self._store}': {err}", [], False
            for (p, _), msg in zip(present, messages, strict=True):
                if type(msg) is dict:
                    self._emit(p, msg)
                else:
                    p.item.fail(self.name, f"substream {self._sub_stream}: message {p.uuid} is indexed but "
                                           "missing from the store (run agglo entwine verify)")
            head = Head.from_dict(raw_head)
            if head.idx - head.anchoredIdx >= self._interval:
                error = yield from self._anchor(head, inv)  # finish what the first delivery left undone
                if error is not None:
                    return error, [], False
            return None, [p for p, _ in present], True
        writes: list[tuple[str, dict]] = []
        if raw_head is None:
            genesis = yield from self._genesis()
            if isinstance(genesis, str):
                return genesis, [], False
            head = Head.at_genesis(genesis)
            writes += [(self._idx_prefix + "0", genesis), (self._uuid_prefix + genesis["uuid"], {"idx": 0})]
        else:
            head = Head.from_dict(raw_head)
        if head.idx - head.anchoredIdx >= self._interval:
            # An anchor that is due was not made (a crash, a ticker outage): make it before going on.
            error = yield from self._anchor(head, inv)
            return error, [], error is None
        room = self._interval - (head.idx - head.anchoredIdx)
        chunk = look[:min(room, MAX_APPEND)]
        messages, new_head = append(head, [(p.uuid, inv.now_ms, self._connection, p.key, p.digest) for p in chunk],
                                    self._sub_stream, self._signer)
        writes += [(self._idx_prefix + str(m["idx"]), m) for m in messages]
        writes += [(self._uuid_prefix + m["uuid"], {"idx": m["idx"]}) for m in messages]
        writes.append((self._head_key, new_head.to_dict()))
        [won] = yield [CompareAndPut(self._store, self._head_key, None if raw_head is None else head.uuid,
                                     tuple(writes), tuple(self._uuid_prefix + p.uuid for p in chunk), self._retry)]
        if (err := effect_error(won)) is not None:
            return f"could not append to substream {self._sub_stream} in '{self._store}': {err}", [], False
        if won is not True:
            return None, [], False
        for p, m in zip(chunk, messages, strict=True):
            self._emit(p, m)
        if new_head.idx - new_head.anchoredIdx >= self._interval:
            error = yield from self._anchor(new_head, inv)
            if error is not None:
                # The messages are in the chain; failing the records makes a redelivery finish the anchor.
                for p in chunk:
                    p.item.fail(self.name, error, transient=True)
        return None, chunk, True

    def _genesis(self) -> Driver:
        """Register the substream's key and fetch its genesis (both idempotent at the ticker)."""
        reg, genesis = yield [
            self._ticker("POST", "/api/v1/register", {"subStreamID": self._sub_stream,
                                                        "publicKey": self._signer.public_pem}),
            self._ticker("GET", f"/api/v1/createGenesisProof/{self._sub_stream}")]
        for answer in (reg, genesis):
            if (err := effect_error(answer)) is not None:
                return f"ticker {self._endpoint} refused substream {self._sub_stream}: {err}"
        message = genesis.get("message") if type(genesis) is dict else None
        if type(message) is not dict or message.get("subStreamID") != self._sub_stream:
            return f"ticker {self._endpoint} answered createGenesisProof without a genesis message"
        return message

    def _anchor(self, head: Head, inv: Invocation) -> Driver:
        """Send the chain since the last anchor to the ticker and adopt its receipt; an error, or None."""
        [proof] = yield [GetItems(self._store, tuple(self._idx_prefix + str(i)
                                                     for i in range(head.anchoredIdx, head.idx + 1)), self._retry)]
        if (err := effect_error(proof)) is not None:
            return f"could not read substream messages in '{self._store}': {err}"
        [receipt] = yield [self._ticker("POST", "/api/v1/anchor", {"subStreamID": self._sub_stream,
                                                                   "proof": list(proof)})]
        if isinstance(receipt, EffectFailed) and receipt.details.get("status") == 409:
            # Another instance anchored first (or our answer was lost): adopt where the ticker stands.
            [start] = yield [self._ticker("GET", f"/api/v1/getProofStartUuid/{self._sub_stream}")]
            if (err := effect_error(start)) is not None:
                return f"ticker {self._endpoint}: {err}"
            if type(start) is not dict or type(start.get("idx")) is not int or not start.get("tickerUuid"):
                return f"ticker {self._endpoint} answered getProofStartUuid without uuid, idx and tickerUuid"
            anchored = (start["uuid"], start["idx"], start["tickerUuid"])
        elif (err := effect_error(receipt)) is not None:
            return f"ticker {self._endpoint} refused to anchor substream {self._sub_stream}: {err}"
        else:
            ticker_message = receipt.get("tickerMessage") if type(receipt) is dict else None
            if type(ticker_message) is not dict or type(ticker_message.get("uuid")) is not str:
                return f"ticker {self._endpoint} answered an anchor without a ticker message"
            anchored = (proof[-1]["uuid"], proof[-1]["idx"], ticker_message["uuid"])
        current = head
        for _ in range(MAX_CONFLICTS):
            if current.anchoredIdx >= anchored[1]:
                return None
            moved = Head(current.uuid, current.idx, current.digest, anchored[2], anchored[0], anchored[1])
            [won] = yield [CompareAndPut(self._store, self._head_key, current.uuid,
                                         ((self._head_key, moved.to_dict()),), (), self._retry)]
            if won is True:
                return None
            [values] = yield [GetItems(self._store, (self._head_key,), self._retry)]
            if (err := effect_error(won) or effect_error(values)) is not None:
                return f"could not record the anchor in '{self._store}': {err}"
            current = Head.from_dict(values[0])
        return f"substream {self._sub_stream}: could not record the anchor, the head kept moving"

    def _emit(self, p: _Pending, message: dict) -> None:
        event = p.item.event
        assert event is not None
        entry = {"objectDescriptor": {"objectKey": p.key, "objectStoreConnectionString": self._connection},
                 "entwineUuid": p.uuid, "tickerUuid": message.get("anchorTickerUuid"),
                 "subStreamID": self._sub_stream, "subStreamIndex": message.get("idx")}
        previous = event.get(OUTPUT)
        p.item.event = {**event, OUTPUT: [*(previous if type(previous) is list else ()), entry]}


def compile(ctx: StageContext) -> EntwineStage:
    name, pem_path = ctx.step.params["name"], ctx.step.params["pemPath"]
    where = f"entwine process '{name}' (pipeline '{ctx.pipeline}')"
    pem = ctx.keys.get(pem_path) if isinstance(ctx.keys, Mapping) else None
    if pem is None:
        raise ConfigError([f"{where}: no private key loaded for pemPath '{pem_path}'"])
    try:
        signer = Signer(pem)
    except BadKey as e:
        raise ConfigError([f"{where}: pemPath '{pem_path}': {e}"]) from None
    return EntwineStage(ctx, signer)
