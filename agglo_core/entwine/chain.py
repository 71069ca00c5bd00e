"""A substream: a signed hash chain of messages, one per entwined event.

A message is a JSON object (binge's ``StreamImmutableMessage`` fields):

    uuid, prevUuid, idx, ts, subStreamID, objectStoreConnectionString,
    objectStoreKey, objectDigest, anchorTickerUuid, signature, digest

``signature`` (base64) covers the canonical encoding of ``SIGNED_FIELDS``;
``digest`` (hex) is ``SHA-256(prev digest ‖ signature)``, so changing, dropping
or reordering any message breaks every digest after it. Message 0 is the
genesis the ticker issued for the substream (signed by the ticker).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from agglo_core.entwine.crypto import Signer, canonical, chain_digest, verify_signature
from agglo_core.errors import StageError

SIGNED_FIELDS = ("uuid", "prevUuid", "idx", "ts", "subStreamID", "objectStoreConnectionString",
                 "objectStoreKey", "objectDigest", "anchorTickerUuid")
MESSAGE_FIELDS = frozenset((*SIGNED_FIELDS, "signature", "digest"))
_TYPES = {"idx": int, "ts": int}


@dataclass(frozen=True, slots=True)
class Head:
    """Where a substream stands: its last message and its last anchor.

    ``anchorTickerUuid`` is the ticker message new messages are anchored to (the
    receipt of the last anchor, or the genesis's); ``anchoredIdx``/``anchoredUuid``
    is the last message the ticker has accepted, where the next proof starts.
    """

    uuid: str
    idx: int
    digest: str
    anchorTickerUuid: str
    anchoredUuid: str
    anchoredIdx: int

    def to_dict(self) -> dict:
        return {f: getattr(self, f) for f in self.__slots__}

    @classmethod
    def from_dict(cls, d: object) -> Head:
        try:
            return cls(**{f: d[f] for f in cls.__slots__})  # type: ignore[index]
        except (KeyError, TypeError):
            raise StageError(f"the substream head is not well formed: {str(d)[:200]}") from None

    @classmethod
    def at_genesis(cls, genesis: dict) -> Head:
        return cls(genesis["uuid"], genesis["idx"], genesis["digest"], genesis["anchorTickerUuid"],
                   genesis["uuid"], genesis["idx"])


def sign_message(fields: dict, prev_digest: str, signer: Signer) -> dict:
    """``fields`` (the signed ones) completed with their signature and chain digest."""
    signature = signer.sign(canonical(fields, SIGNED_FIELDS))
    return {**fields, "signature": signature, "digest": chain_digest(prev_digest, signature)}


def append(head: Head, entries: Sequence[tuple[str, int, str, str, str]], sub_stream: str,
           signer: Signer) -> tuple[list[dict], Head]:
    """New messages after ``head``, one per ``(uuid, ts, object store, object key, object digest)``."""
    messages = []
    prev_uuid, idx, digest = head.uuid, head.idx, head.digest
    for uuid, ts, store, key, obj_digest in entries:
        idx += 1
        msg = sign_message({"uuid": uuid, "prevUuid": prev_uuid, "idx": idx, "ts": ts, "subStreamID": sub_stream,
                            "objectStoreConnectionString": store, "objectStoreKey": key,
                            "objectDigest": obj_digest, "anchorTickerUuid": head.anchorTickerUuid},
                           digest, signer)
        messages.append(msg)
        prev_uuid, digest = uuid, msg["digest"]
    last = messages[-1] if messages else None
    new_head = head if last is None else Head(last["uuid"], last["idx"], last["digest"], head.anchorTickerUuid,
                                              head.anchoredUuid, head.anchoredIdx)
    return messages, new_head


@dataclass(frozen=True, slots=True)
class Break:
    """The first broken link of a chain: which message (position in what was checked) and why."""

    position: int
    idx: object
    uuid: object
    reason: str

    def __str__(self) -> str:
        return f"message {self.idx} ({self.uuid}): {self.reason}"


def _shape_problem(msg: object) -> str | None:
    if type(msg) is not dict:
        return "not a JSON object"
    if set(msg) != MESSAGE_FIELDS:
        missing, extra = MESSAGE_FIELDS - set(msg), set(msg) - MESSAGE_FIELDS
        return f"fields wrong (missing {sorted(missing)}, unexpected {sorted(extra)})"
    for name in MESSAGE_FIELDS:
        want = _TYPES.get(name, str)
        if type(msg[name]) is not want:
            return f"{name} is not a {want.__name__}"
    return None


def verify_link(prev: dict, msg: object, public_pem: str,
                anchor_index: Callable[[str], int | None] | None = None) -> str | None:
    """Why ``msg`` does not validly follow ``prev`` (None if it does).

    With ``anchor_index`` (ticker uuid -> its index, None if unknown), anchors
    must be ticker messages and must not go back in time along the chain.
    """
    if (problem := _shape_problem(msg)) is not None:
        return problem
    assert isinstance(msg, dict)
    if msg["subStreamID"] != prev["subStreamID"]:
        return f"belongs to substream {msg['subStreamID']!r}, not {prev['subStreamID']!r}"
    if msg["prevUuid"] != prev["uuid"]:
        return f"its previous message is {msg['prevUuid']}, but {prev['uuid']} comes before it"
    if msg["idx"] != prev["idx"] + 1:
        return f"index {msg['idx']} does not follow {prev['idx']}"
    if not verify_signature(public_pem, msg["signature"], canonical(msg, SIGNED_FIELDS)):
        return "signature does not verify with the substream's key"
    try:
        expected = chain_digest(prev["digest"], msg["signature"])
    except ValueError:
        return "signature or previous digest is not well formed"
    if msg["digest"] != expected:
        return "digest is not H(previous digest ‖ signature)"
    if anchor_index is not None:
        here, before = anchor_index(msg["anchorTickerUuid"]), anchor_index(prev["anchorTickerUuid"])
        if here is None:
            return f"anchored to {msg['anchorTickerUuid']}, which is not a ticker message"
        if before is not None and here < before:
            return "anchored to an earlier ticker message than the message before it"
    return None


def verify_chain(messages: Sequence[object], public_pem: str,
                 anchor_index: Callable[[str], int | None] | None = None) -> Break | None:
    """The first broken link after ``messages[0]`` (taken as trusted), or None if the chain holds."""
    if not messages:
        return None
    first = messages[0]
    if (problem := _shape_problem(first)) is not None:
        return Break(0, None, None, problem)
    assert isinstance(first, dict)
    prev = first
    for pos, msg in enumerate(messages[1:], 1):
        if (reason := verify_link(prev, msg, public_pem, anchor_index)) is not None:
            d = msg if type(msg) is dict else {}
            return Break(pos, d.get("idx"), d.get("uuid"), reason)
        prev = msg  # type: ignore[assignment]
    return None
