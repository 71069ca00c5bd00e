"""The ticker: a signed hash chain of ticker messages that substreams anchor to, and happened-before.

A ticker message is ``{uuid, prevUuid, idx, ts, subStreamID, proofDigest,
signature, digest}``: it advances on a tick (``subStreamID`` and
``proofDigest`` empty) and on every accepted anchor (naming the substream and
the digest of the last message of the proof it accepted). The signature covers
``TICK_SIGNED_FIELDS``; ``digest`` is ``H(prev digest ‖ signature)`` and the uuid
is derived from the digest, so no one without the ticker's key can predict the
uuid of a future ticker message and claim to have seen it.

Each anchored message gets a window: it was made after its anchor (the ticker
message it names) and before the receipt of the proof that anchored it. A
happened before B if A's receipt is not later than B's anchor; if neither
window ends before the other begins, the two are unordered (never guessed).

``Ticker`` keeps its state through an injected ``TickerState`` (``get``/``put``
of JSON values inside one transaction per call); time comes in as ``now_ms``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from agglo_core.entwine.chain import sign_message, verify_chain
from agglo_core.entwine.crypto import Signer, canonical, chain_digest, is_public_key, verify_signature
from agglo_core.ids import IdMaker

TICK_SIGNED_FIELDS = ("prevUuid", "idx", "ts", "subStreamID", "proofDigest")
TICK_FIELDS = frozenset((*TICK_SIGNED_FIELDS, "uuid", "signature", "digest"))
_GENESIS_IDS = IdMaker("entwine", "genesis")
MAX_PROOF = 10_000


class TickerError(Exception):
    """A refused request: ``status`` is the HTTP status the transport answers with."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class TickerState(Protocol):
    def get(self, key: str) -> Any: ...

    def put(self, key: str, value: Any) -> None: ...


def uuid_of_digest(digest: str) -> str:
    d = digest[:32]
    return f"{d[:8]}-{d[8:12]}-{d[12:16]}-{d[16:20]}-{d[20:32]}"


def make_tick(prev: dict | None, now_ms: int, signer: Signer, sub_stream: str = "", proof_digest: str = "") -> dict:
    fields = {"prevUuid": prev["uuid"] if prev else "", "idx": prev["idx"] + 1 if prev else 0,
              "ts": max(now_ms, prev["ts"]) if prev else now_ms, "subStreamID": sub_stream,
              "proofDigest": proof_digest}
    signature = signer.sign(canonical(fields, TICK_SIGNED_FIELDS))
    digest = chain_digest(prev["digest"] if prev else "", signature)
    return {**fields, "uuid": uuid_of_digest(digest), "signature": signature, "digest": digest}


def verify_ticks(ticks: Sequence[dict], public_pem: str) -> str | None:
    """Why the ticker chain ``ticks`` (from index 0) does not hold, or None."""
    prev: dict | None = None
    for pos, t in enumerate(ticks):
        if type(t) is not dict or set(t) != TICK_FIELDS:
            return f"ticker message {pos}: fields wrong"
        if t["idx"] != pos or t["prevUuid"] != (prev["uuid"] if prev else ""):
            return f"ticker message {pos}: out of place"
        if not verify_signature(public_pem, t["signature"], canonical(t, TICK_SIGNED_FIELDS)):
            return f"ticker message {pos}: signature does not verify"
        try:
            digest = chain_digest(prev["digest"] if prev else "", t["signature"])
        except ValueError:
            return f"ticker message {pos}: signature is not well formed"
        if t["digest"] != digest or t["uuid"] != uuid_of_digest(digest):
            return f"ticker message {pos}: digest or uuid wrong"
        prev = t
    return None


@dataclass(frozen=True, slots=True)
class Window:
    """An anchored message was made after ticker message ``after`` and before ticker message ``before``."""

    after: int
    before: int


def order(lhs: Window, rhs: Window) -> str:
    """"before", "after" or "unordered": what the ticker can prove about lhs relative to rhs."""
    if lhs.before <= rhs.after:
        return "before"
    if rhs.before <= lhs.after:
        return "after"
    return "unordered"


class Ticker:
    def __init__(self, state: TickerState, signer: Signer) -> None:
        self.state = state
        self.signer = signer

    # --- the ticker chain -------------------------------------------------------------------------------
    def head(self, now_ms: int) -> dict:
        """The latest ticker message; the first call makes message 0."""
        head = self.state.get("head")
        return head if head is not None else self._append(None, now_ms)

    def tick(self, now_ms: int, sub_stream: str = "", proof_digest: str = "") -> dict:
        return self._append(self.state.get("head"), now_ms, sub_stream, proof_digest)

    def _append(self, prev: dict | None, now_ms: int, sub_stream: str = "", proof_digest: str = "") -> dict:
        t = make_tick(prev, now_ms, self.signer, sub_stream, proof_digest)
        self.state.put(f"tick/{t['idx']}", t)
        self.state.put(f"tickuuid/{t['uuid']}", t["idx"])
        self.state.put("head", t)
        return t

    def tick_index(self, uuid: str) -> int | None:
        idx = self.state.get(f"tickuuid/{uuid}") if type(uuid) is str else None
        return idx if type(idx) is int else None

    # --- substreams ---------------------------------------------------------------------------------------
    def register(self, sub_stream: str, public_pem: str) -> None:
        """Record a substream's public key; a substream's key never changes."""
        _check_id(sub_stream)
        if type(public_pem) is not str or not is_public_key(public_pem):
            raise TickerError(400, "publicKey must be an RSA or Ed25519 public key in PEM")
        known = self.state.get(f"key/{sub_stream}")
        if known is not None and known != public_pem:
            raise TickerError(409, f"substream {sub_stream} is registered with another key")
        if known is None:
            self.state.put(f"key/{sub_stream}", public_pem)

    def genesis(self, sub_stream: str, now_ms: int) -> dict:
        """The substream's genesis message (made once, signed by the ticker, anchored to the head)."""
        _check_id(sub_stream)
        existing: dict | None = self.state.get(f"genesis/{sub_stream}")
        if existing is not None:
            return existing
        head = self.head(now_ms)
        fields = {"uuid": _GENESIS_IDS(sub_stream), "prevUuid": "", "idx": 0, "ts": now_ms,
                  "subStreamID": sub_stream, "objectStoreConnectionString": "", "objectStoreKey": "",
                  "objectDigest": "", "anchorTickerUuid": head["uuid"]}
        message = sign_message(fields, "", self.signer)
        self.state.put(f"genesis/{sub_stream}", message)
        return message

    def proof_start(self, sub_stream: str) -> dict:
        """Where the next proof must start, and the ticker message to anchor to from there."""
        start = self.state.get(f"last/{sub_stream}") or self.state.get(f"genesis/{sub_stream}")
        if start is None:
            raise TickerError(404, f"substream {sub_stream} has no genesis; call createGenesisProof first")
        ticker_uuid = self.state.get(f"receipt/{sub_stream}") or start["anchorTickerUuid"]
        return {"uuid": start["uuid"], "idx": start["idx"], "tickerUuid": ticker_uuid}

    def anchor(self, sub_stream: str, proof: Any, now_ms: int) -> dict:
        """Verify ``proof`` and anchor it; the receipt is the new ticker message."""
        _check_id(sub_stream)
        public_pem = self.state.get(f"key/{sub_stream}")
        if public_pem is None:
            raise TickerError(403, f"substream {sub_stream} is not registered")
        if type(proof) is not list or len(proof) < 2:
            raise TickerError(400, "proof must be a list: the last anchored message, then at least one new one")
        if len(proof) > MAX_PROOF:
            raise TickerError(413, f"proof longer than {MAX_PROOF} messages")
        start = self.state.get(f"last/{sub_stream}") or self.state.get(f"genesis/{sub_stream}")
        if start is None:
            raise TickerError(404, f"substream {sub_stream} has no genesis; call createGenesisProof first")
        if proof[0] != start:
            raise TickerError(409, f"proof must start at message {start['idx']} ({start['uuid']}), the last "
                                   "one anchored")
        broken = verify_chain(proof, public_pem, self.tick_index)
        if broken is not None:
            raise TickerError(400, f"proof rejected: {broken}")
        receipt = self.tick(now_ms, sub_stream, proof[-1]["digest"])
        for msg in proof[1:]:
            self.state.put(f"msg/{sub_stream}/{msg['idx']}", {
                "uuid": msg["uuid"], "digest": msg["digest"],
                "after": self.tick_index(msg["anchorTickerUuid"]), "before": receipt["idx"]})
        self.state.put(f"last/{sub_stream}", proof[-1])
        self.state.put(f"receipt/{sub_stream}", receipt["uuid"])
        return receipt

    def window(self, sub_stream: str, uuid: str, idx: int) -> Window:
        entry = self.state.get(f"msg/{sub_stream}/{idx}")
        if entry is None:
            raise TickerError(404, f"message {idx} of substream {sub_stream} is not anchored (yet)")
        if entry["uuid"] != uuid:
            raise TickerError(404, f"message {idx} of substream {sub_stream} is {entry['uuid']}, not {uuid}")
        return Window(entry["after"], entry["before"])

    def happened_before(self, lhs: tuple[str, str, int], rhs: tuple[str, str, int]) -> dict:
        lw, rw = self.window(*lhs), self.window(*rhs)
        relation = order(lw, rw)
        return {"happenedBefore": relation == "before", "order": relation,
                "lhsWindow": {"after": lw.after, "before": lw.before},
                "rhsWindow": {"after": rw.after, "before": rw.before}}


def _check_id(sub_stream: Any) -> None:
    if type(sub_stream) is not str or not sub_stream or "/" in sub_stream or len(sub_stream) > 200:
        raise TickerError(400, "subStreamID must be a non-empty string without '/' (at most 200 characters)")
