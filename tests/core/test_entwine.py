"""Entwine's pure parts: keys and signatures, the substream chain, the ticker, happened-before, the stage."""

from __future__ import annotations

import copy

import pytest

from agglo_core import Record, compile_plan
from agglo_core.entwine.chain import Head, append, verify_chain
from agglo_core.entwine.crypto import BadKey, Signer, canonical, object_digest, verify_signature
from agglo_core.entwine.ticker import Ticker, TickerError, Window, order, verify_ticks
from agglo_core.errors import ConfigError
from tests.builders import PARTITION, config, external, kv
from tests.entwine_world import DictState, EntwineWorld, ed25519_pem, rsa_pem

SS_A, SS_B = "e546e731-2b86-43cd-b847-764f437a7835", "ed94a517-f030-4aa6-b390-6283ad24cab3"


# --- keys and signatures ----------------------------------------------------------------------------------
@pytest.mark.parametrize("pem", [rsa_pem("pkcs1"), rsa_pem("pkcs8"), ed25519_pem()], ids=["pkcs1", "pkcs8", "ed25519"])
def test_every_supported_key_signs_and_verifies(pem: bytes) -> None:
    signer = Signer(pem)
    sig = signer.sign(b"payload")
    assert sig == signer.sign(b"payload")  # deterministic: a re-signed message is the same message
    assert verify_signature(signer.public_pem, sig, b"payload")
    assert not verify_signature(signer.public_pem, sig, b"payloaD")
    assert not verify_signature(Signer(ed25519_pem()).public_pem, sig, b"payload")


def test_a_bad_key_is_named_as_such() -> None:
    with pytest.raises(BadKey, match="not an unencrypted PEM private key"):
        Signer(b"-----BEGIN PRIVATE KEY-----\nnope\n-----END PRIVATE KEY-----\n")


def test_canonical_encoding_is_sorted_compact_and_fixed() -> None:
    assert canonical({"b": 1, "a": "x", "z": 9}, ("a", "b")) == b'{"a":"x","b":1}'
    assert object_digest({"b": 1, "a": 2}) == object_digest({"a": 2, "b": 1})
    with pytest.raises(ValueError, match="lacks the field 'c'"):
        canonical({"a": 1}, ("a", "c"))


# --- the chain --------------------------------------------------------------------------------------------
def _chain(signer: Signer, n: int = 5) -> list[dict]:
    ticker = Ticker(DictState(), Signer(ed25519_pem()))
    ticker.register(SS_A, signer.public_pem)
    genesis = ticker.genesis(SS_A, 1)
    entries = [(f"00000000-0000-5000-8000-{i:012d}", 10 + i, "mem:o", f"k{i}", object_digest({"i": i}))
               for i in range(n)]
    messages, head = append(Head.at_genesis(genesis), entries, SS_A, signer)
    assert head.idx == n and head.uuid == messages[-1]["uuid"]
    return [genesis, *messages]


def _mutations(messages: list[dict]) -> list[tuple[str, list]]:
    """Every single-field change, every reorder of neighbours and every drop, each as a new chain."""
    out = []
    for i in range(1, len(messages)):
        for name, value in messages[i].items():
            changed = copy.deepcopy(messages)
            if isinstance(value, int):
                changed[i][name] = value + 1
            elif name == "signature":
                # flip one byte of the signature, keep it base64
                changed[i][name] = ("B" if value[0] == "A" else "A") + value[1:]
            else:
                changed[i][name] = value[:-1] + ("0" if value[-1:] != "0" else "1") if value else "x"
            out.append((f"message {i} field {name}", changed))
        if i + 1 < len(messages):
            swapped = list(messages)
            swapped[i], swapped[i + 1] = swapped[i + 1], swapped[i]
            out.append((f"swap {i}/{i + 1}", swapped))
        if i + 1 < len(messages):
            out.append((f"drop {i}", messages[:i] + messages[i + 1:]))
    return out


def test_an_untouched_chain_verifies_and_every_mutation_is_caught() -> None:
    signer = Signer(ed25519_pem())
    messages = _chain(signer)
    assert verify_chain(messages, signer.public_pem) is None
    mutations = _mutations(messages)
    caught = [label for label, chain in mutations if verify_chain(chain, signer.public_pem) is not None]
    assert len(mutations) >= 50
    assert caught == [label for label, _ in mutations]


def test_a_chain_signed_with_another_key_is_rejected() -> None:
    messages = _chain(Signer(rsa_pem()))
    broken = verify_chain(messages, Signer(ed25519_pem()).public_pem)
    assert broken is not None and broken.position == 1 and "signature" in broken.reason


# --- the ticker -------------------------------------------------------------------------------------------
class _Sub:
    """A substream appending to its chain and anchoring to ``ticker``."""

    def __init__(self, ticker: Ticker, sub_stream: str, signer: Signer) -> None:
        self.ticker, self.sub_stream, self.signer = ticker, sub_stream, signer
        ticker.register(sub_stream, signer.public_pem)
        genesis = ticker.genesis(sub_stream, 1)
        self.chain = [genesis]
        self.head = Head.at_genesis(genesis)

    def add(self, n: int) -> list[dict]:
        start = self.head.idx
        entries = [(f"{self.sub_stream[:8]}-0000-5000-8000-{start + i:012d}", 5, "mem:o", "k", "d")
                   for i in range(n)]
        messages, self.head = append(self.head, entries, self.sub_stream, self.signer)
        self.chain.extend(messages)
        return messages

    def proof(self) -> list[dict]:
        return self.chain[self.head.anchoredIdx:]

    def anchor(self, now: int = 2) -> dict:
        proof = self.proof()
        receipt = self.ticker.anchor(self.sub_stream, proof, now)
        h = self.head
        self.head = Head(h.uuid, h.idx, h.digest, receipt["uuid"], proof[-1]["uuid"], proof[-1]["idx"])
        return receipt

    def ref(self, idx: int) -> tuple[str, str, int]:
        return self.sub_stream, self.chain[idx]["uuid"], idx


def test_happened_before_follows_anchors_and_same_window_is_unordered() -> None:
    ticker = Ticker(DictState(), Signer(ed25519_pem()))
    ticker.tick(0)
    a, b = _Sub(ticker, SS_A, Signer(rsa_pem())), _Sub(ticker, SS_B, Signer(ed25519_pem()))
    a.add(3)
    a.anchor()                      # A1..A3 anchored: receipt R1
    b.add(2)                        # B1, B2 made after the genesis, anchored to its tick
    b.anchor()
    a.add(2)                        # A4, A5 anchored to R1
    a.anchor()
    b.add(2)
    b.anchor()
    hb = ticker.happened_before
    assert hb(a.ref(1), a.ref(4))["order"] == "before"
    assert hb(a.ref(4), a.ref(1))["happenedBefore"] is False
    assert hb(a.ref(3), b.ref(3))["happenedBefore"] is True   # B3 anchored to B's receipt, after A's
    assert hb(b.ref(3), a.ref(3))["order"] == "after"
    assert hb(a.ref(1), a.ref(2))["order"] == "unordered"     # one anchor window: not guessed
    assert hb(a.ref(1), b.ref(1))["order"] == "unordered"     # windows overlap
    with pytest.raises(TickerError, match="not anchored"):
        a.add(1)
        hb(a.ref(6), b.ref(1))
    with pytest.raises(TickerError, match="not .*uuid|is .*, not"):
        hb((SS_A, "00000000-0000-0000-0000-000000000000", 1), b.ref(1))
    ticks = [ticker.state.get(f"tick/{i}") for i in range(ticker.head(0)["idx"] + 1)]
    assert verify_ticks(ticks, ticker.signer.public_pem) is None


def test_order_of_windows() -> None:
    assert order(Window(1, 3), Window(3, 5)) == "before"
    assert order(Window(3, 5), Window(1, 3)) == "after"
    assert order(Window(1, 4), Window(3, 5)) == "unordered"


def test_every_tampered_proof_is_rejected_and_the_good_one_then_accepted() -> None:
    ticker = Ticker(DictState(), Signer(ed25519_pem()))
    sub = _Sub(ticker, SS_A, Signer(ed25519_pem()))
    sub.add(4)
    proof = sub.proof()
    mutations = _mutations(proof)
    mutations.append(("truncated to the start", proof[:1]))
    mutations.append(("not starting at the genesis", proof[1:]))
    forger = Signer(ed25519_pem())
    forged, _ = append(Head.at_genesis(proof[0]), [("f0000000-0000-5000-8000-000000000001", 5, "m", "k", "d")],
                       SS_A, forger)
    mutations.append(("signed with another key", [proof[0], *forged]))
    rejected = 0
    for label, bad in mutations:
        with pytest.raises(TickerError) as e:
            ticker.anchor(SS_A, bad, 3)
        assert e.value.status in (400, 409), label
        rejected += 1
    assert rejected == len(mutations) >= 40
    assert ticker.state.get(f"last/{SS_A}") is None  # nothing was anchored by a bad proof
    receipt = sub.anchor()
    assert receipt["subStreamID"] == SS_A and receipt["proofDigest"] == proof[-1]["digest"]
    with pytest.raises(TickerError) as replay:
        ticker.anchor(SS_A, proof, 4)  # the same proof again: it no longer starts where the ticker stands
    assert replay.value.status == 409
    assert ticker.proof_start(SS_A) == {"uuid": proof[-1]["uuid"], "idx": 4, "tickerUuid": receipt["uuid"]}


def test_a_substream_key_cannot_be_swapped_and_anchors_must_be_real() -> None:
    ticker = Ticker(DictState(), Signer(ed25519_pem()))
    sub = _Sub(ticker, SS_A, Signer(ed25519_pem()))
    with pytest.raises(TickerError) as e:
        ticker.register(SS_A, Signer(ed25519_pem()).public_pem)
    assert e.value.status == 409
    with pytest.raises(TickerError, match="PEM"):
        ticker.register(SS_B, "not a key")
    # A message claiming an anchor the ticker never issued (a guessed future tick) is refused.
    head = sub.head
    sub.head = Head(head.uuid, head.idx, head.digest, "11111111-2222-3333-4444-555555555555", head.anchoredUuid,
                    head.anchoredIdx)
    sub.add(1)
    with pytest.raises(TickerError, match="not a ticker message"):
        ticker.anchor(SS_A, sub.proof(), 3)


def test_ticker_chain_tampering_is_detected() -> None:
    ticker = Ticker(DictState(), Signer(rsa_pem()))
    for now in range(5):
        ticker.tick(now)
    ticks = [ticker.state.get(f"tick/{i}") for i in range(5)]
    assert verify_ticks(ticks, ticker.signer.public_pem) is None
    bad = copy.deepcopy(ticks)
    bad[2]["ts"] += 1
    assert "signature" in verify_ticks(bad, ticker.signer.public_pem)
    assert verify_ticks([ticks[0], ticks[2]], ticker.signer.public_pem) is not None


# --- the stage --------------------------------------------------------------------------------------------
PEM_A, PEM_B = "/keys/a.pem", "/keys/b.pem"


def _entwine_config(name: str, sub_stream: str, pem: str, interval: int) -> dict:
    return config({"entwine": {"name": name, "streamStateStore": "KV", "objectStore": "Objects", "pemPath": pem,
                               "subStreamID": sub_stream, "tickerEndpoint": "ticker:9080",
                               "tickerInterval": interval, "condition": {}}},
                  externals=(kv("KV", "mem:kv"), external("ExternalObjectStore", "Objects", "mem:objects")))


def _keys() -> dict[str, bytes]:
    return {PEM_A: rsa_pem(), PEM_B: ed25519_pem()}


def test_the_stage_needs_its_key_and_a_ticker() -> None:
    with pytest.raises(ConfigError, match="no private key loaded for pemPath '/keys/a.pem'"):
        compile_plan(_entwine_config("E", SS_A, PEM_A, 1))
    with pytest.raises(ConfigError, match="not an unencrypted PEM"):
        compile_plan(_entwine_config("E", SS_A, PEM_A, 1), {PEM_A: b"junk"})


def test_two_substreams_entwine_through_the_stage_and_redelivery_appends_nothing() -> None:
    world = EntwineWorld()
    keys = _keys()
    plan_a = compile_plan(_entwine_config("EntwineA", SS_A, PEM_A, 1), keys)
    plan_b = compile_plan(_entwine_config("EntwineB", SS_B, PEM_B, 3), keys)
    outs = {}
    for i in range(6):
        for name, plan in (("a", plan_a), ("b", plan_b)):
            world.now_ms += 10
            [o] = plan.run([Record(f"{name}#{i}", {"n": i})], world.now_ms, world.perform)
            assert o.ok, o.errors
            outs[(name, i)] = o.outputs[0][1]["internal:entwine:output"][-1]
    a0 = outs[("a", 0)]
    assert a0["subStreamID"] == SS_A and a0["subStreamIndex"] == 1
    assert world.kv[("Objects", a0["objectDescriptor"]["objectKey"])]["n"] == 0
    assert a0["objectDescriptor"]["objectStoreConnectionString"] == "mem:objects"
    chain_a, chain_b = world.messages("KV", SS_A), world.messages("KV", SS_B)
    assert [m["idx"] for m in chain_a] == list(range(7)) and len(chain_b) == 7
    assert verify_chain(chain_a, Signer(keys[PEM_A]).public_pem, world.ticker.tick_index) is None
    # Interval 1: every message anchored alone, so consecutive ones are ordered. Interval 3: B1..B3 share a window.
    hb = world.ticker.happened_before
    ref = {k: (v["subStreamID"], v["entwineUuid"], v["subStreamIndex"]) for k, v in outs.items()}
    assert hb(ref[("a", 0)], ref[("a", 1)])["order"] == "before"
    assert hb(ref[("a", 1)], ref[("a", 0)])["happenedBefore"] is False
    assert hb(ref[("b", 0)], ref[("b", 1)])["order"] == "unordered"
    assert hb(ref[("a", 0)], ref[("b", 3)])["order"] == "before"
    # Redelivery of a#2: the same message is reported, the chain does not grow.
    [again] = plan_a.run([Record("a#2", {"n": 2})], world.now_ms + 5, world.perform)
    assert again.outputs[0][1]["internal:entwine:output"][-1] == outs[("a", 2)]
    assert len(world.messages("KV", SS_A)) == 7


def test_a_batch_anchors_every_interval_and_survives_a_concurrent_writer() -> None:
    world = EntwineWorld()
    keys = _keys()
    plan = compile_plan(_entwine_config("EntwineA", SS_A, PEM_A, 2), keys)
    rival = compile_plan(_entwine_config("EntwineA", SS_A, PEM_A, 2) | {"partitionUuid": PARTITION}, keys)
    interfered = []

    def rival_appends_first(e: object) -> None:
        # Once, between our read of the head and our write, another instance appends to the substream.
        if not interfered:
            interfered.append(True)
            [o] = rival.run([Record("rival#1", {"rival": True})], world.now_ms, world.perform)
            assert o.ok, o.errors

    world.before_compare = rival_appends_first
    outcomes = plan.run([Record(f"r#{i}", {"i": i}) for i in range(5)], world.now_ms, world.perform)
    assert all(o.ok for o in outcomes), [o.errors for o in outcomes]
    chain = world.messages("KV", SS_A)
    assert len(chain) == 7  # genesis, the rival's message, five of ours: nothing lost, nothing forked
    assert verify_chain(chain, Signer(keys[PEM_A]).public_pem, world.ticker.tick_index) is None
    anchors = [c for c in world.calls if c.path == "/api/v1/anchor"]
    assert len(anchors) == 3 and all(len(c.body["proof"]) == 3 for c in anchors)
    head = world.kv[("KV", f"entwine/{SS_A}/head")]
    assert head["anchoredIdx"] == 6


def test_an_anchor_the_ticker_refuses_fails_the_records_and_redelivery_finishes_it() -> None:
    world = EntwineWorld()
    plan = compile_plan(_entwine_config("EntwineA", SS_A, PEM_A, 1), _keys())
    down = {"on": True}
    route = world.route

    def flaky(e):
        if down["on"] and e.path == "/api/v1/anchor":
            from agglo_core.entwine.ticker import TickerError

            raise TickerError(500, "ticker store unavailable")
        return route(e)

    world.route = flaky  # type: ignore[method-assign]
    [o] = plan.run([Record("x#1", {"x": 1})], world.now_ms, world.perform)
    assert not o.ok and o.errors[0].transient and "ticker store unavailable" in o.errors[0].message
    assert len(world.messages("KV", SS_A)) == 2  # the message is in the chain, not yet anchored
    down["on"] = False
    [o] = plan.run([Record("x#1", {"x": 1})], world.now_ms, world.perform)
    assert o.ok, o.errors
    assert len(world.messages("KV", SS_A)) == 2
    assert world.kv[("KV", f"entwine/{SS_A}/head")]["anchoredIdx"] == 1


def test_a_damaged_head_fails_the_records_with_a_reason() -> None:
    world = EntwineWorld()
    world.kv[("KV", f"entwine/{SS_A}/head")] = {"uuid": "x"}
    plan = compile_plan(_entwine_config("EntwineA", SS_A, PEM_A, 1), _keys())
    outcomes = plan.run([Record("d#1", {"d": 1}), Record("d#2", {"d": 2})], world.now_ms, world.perform)
    assert [o.errors[0].message for o in outcomes] == ["the substream head is not well formed: {'uuid': 'x'}"] * 2
