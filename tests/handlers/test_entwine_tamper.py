"""Tampering, exhaustively: every byte of a stored object, every field of every message, drops and
reorders in the store, every byte of an anchor request. Each mutation must be caught; none accepted."""

from __future__ import annotations

import io
import json
import sqlite3

import orjson
import pytest
from builders import config, external, kv
from entwine_world import ed25519_pem, rsa_pem, ticker_server

from agglo_core import Record, compile_plan
from agglo_core.config import External
from agglo_core.entwine.crypto import Signer
from handlers.connectors import default_registry
from handlers.entwine.cli import verify_substream
from handlers.runtime.driver import Runtime

SS = "e546e731-2b86-43cd-b847-764f437a7835"
MESSAGES = 6


@pytest.fixture
def substream(tmp_path):
    """A real ticker (HTTP, SQLite state) and a substream of six events in SQLite, objects in files."""
    pem = rsa_pem("pkcs8")
    with ticker_server(f"sqlite:{tmp_path}/ticker.db") as (endpoint, app):
        cfg = config({"entwine": {"name": "E", "streamStateStore": "KV", "objectStore": "Objects",
                                  "pemPath": "k.pem", "subStreamID": SS, "tickerEndpoint": endpoint,
                                  "tickerInterval": 2}},
                     externals=(kv("KV", f"sqlite:{tmp_path}/state.db"),
                                external("ExternalObjectStore", "Objects", f"file:{tmp_path}/objects")))
        runtime = Runtime.build(compile_plan(cfg, {"k.pem": pem}), default_registry())
        outcomes = runtime.process([Record(f"r#{i}", {"story": f"s{i}", "n": i, "tags": ["x", i]})
                                    for i in range(MESSAGES)])
        assert all(o.ok for o in outcomes), [o.errors for o in outcomes]
        yield tmp_path, runtime, Signer(pem).public_pem, app


def _verify(runtime: Runtime, public_pem: str, ticker_pem: str | None = None) -> str | None:
    return verify_substream(runtime.connectors["KV"], runtime.connectors["Objects"], SS, public_pem, ticker_pem)[1]


def test_every_tampering_of_the_store_is_caught(substream) -> None:
    tmp, runtime, public_pem, app = substream
    ticker_pem = app.signer.public_pem
    assert _verify(runtime, public_pem, ticker_pem) is None
    tried = caught = 0
    # Every byte of one stored object, three different flips each.
    obj = sorted((tmp / "objects").iterdir())[0]
    original = obj.read_bytes()
    for pos in range(len(original)):
        for mask in (0x01, 0x20, 0x80):
            changed = bytearray(original)
            changed[pos] ^= mask
            obj.write_bytes(bytes(changed))
            tried += 1
            caught += _verify(runtime, public_pem) is not None
    obj.write_bytes(original)
    # Every field of every message (genesis included), dropped messages, swapped neighbours.
    db = sqlite3.connect(tmp / "state.db")

    def rows() -> dict[str, bytes]:
        return dict(db.execute("SELECT key, value FROM kv WHERE key LIKE ?", (f"entwine/{SS}/idx/%",)))

    def tampered(writes: dict[str, bytes | None], saved: dict[str, bytes]) -> bool:
        for k, v in writes.items():
            db.execute("DELETE FROM kv WHERE key = ?", (k,)) if v is None else \
                db.execute("INSERT OR REPLACE INTO kv VALUES (?, ?)", (k, v))
        db.commit()
        found = _verify(runtime, public_pem, ticker_pem) is not None
        for k in writes:
            db.execute("INSERT OR REPLACE INTO kv VALUES (?, ?)", (k, saved[k]))
        db.commit()
        return found

    saved = rows()
    assert len(saved) == MESSAGES + 1
    for key, raw in saved.items():
        msg = orjson.loads(raw)
        for name, value in msg.items():
            bad = value + 1 if isinstance(value, int) else (value[:-2] + value[-1] + value[-2] if len(value) > 1
                                                            else value + "0")
            if bad == value:
                bad = value + "0"
            tried += 1
            caught += tampered({key: orjson.dumps({**msg, name: bad})}, saved)
        if not key.endswith("/0") and not key.endswith(f"/{MESSAGES}"):
            tried += 1
            caught += tampered({key: None}, saved)
    for i in range(MESSAGES):
        a, b = f"entwine/{SS}/idx/{i}", f"entwine/{SS}/idx/{i + 1}"
        tried += 1
        caught += tampered({a: saved[b], b: saved[a]}, saved)
    db.close()
    assert _verify(runtime, public_pem) is None  # everything restored: the untouched chain still verifies
    print(f"store tampering: {tried} mutations tried, {caught} caught")
    assert caught == tried and tried > 300


def test_every_byte_of_an_anchor_request_matters(substream) -> None:
    _, runtime, public_pem, app = substream
    # The next proof, as the stage would send it: from the last anchored message to two new ones.
    more = runtime.process([Record("late#1", {"n": 100})])
    assert more[0].ok
    head = runtime.connectors["KV"].get(f"entwine/{SS}/head")
    # Append two more messages without anchoring them, through the store directly (a proof in waiting).
    from agglo_core.effects import CompareAndPut
    from agglo_core.entwine.chain import Head, append

    signer = Signer(rsa_pem("pkcs8"))
    h = Head.from_dict(head)
    messages, new_head = append(h, [(f"00000000-0000-5000-8000-00000000000{i}", 1, "file:x", "k", "d")
                                    for i in range(2)], SS, signer)
    kvs = runtime.connectors["KV"]
    kvs.perform([CompareAndPut("KV", f"entwine/{SS}/head", h.uuid,
                               tuple((f"entwine/{SS}/idx/{m['idx']}", m) for m in messages) +
                               ((f"entwine/{SS}/head", new_head.to_dict()),))])
    proof = [kvs.get(f"entwine/{SS}/idx/{i}") for i in range(h.anchoredIdx, new_head.idx + 1)]
    body = orjson.dumps({"subStreamID": SS, "proof": proof})

    def post(data: bytes) -> int:
        environ = {"REQUEST_METHOD": "POST", "PATH_INFO": "/api/v1/anchor", "QUERY_STRING": "",
                   "CONTENT_LENGTH": str(len(data)), "wsgi.input": io.BytesIO(data)}
        status: list[str] = []
        b"".join(app(environ, lambda s, _h: status.append(s)))
        return int(status[0].split()[0])

    tried = rejected = 0
    for pos in range(0, len(body)):
        changed = bytearray(body)
        changed[pos] ^= 0x01
        tried += 1
        rejected += post(bytes(changed)) >= 400
    print(f"anchor request tampering: {tried} one-byte mutations tried, {rejected} rejected")
    assert rejected == tried > 1000
    assert post(body) == 200  # and the untouched request is accepted afterwards
    json.loads(body)  # (the body was valid JSON all along)


def test_verify_reports_a_missing_object(substream, tmp_path) -> None:
    tmp, runtime, public_pem, _ = substream
    victim = sorted((tmp / "objects").iterdir())[2]
    victim.unlink()
    problem = _verify(runtime, public_pem)
    assert problem is not None and "is missing or unreadable" in problem
    other = default_registry().build(External.model_validate(
        {"externalType": "ExternalObjectStore", "name": "O", "connectionString": f"file:{tmp_path}/empty"}))
    assert "is missing" in verify_substream(runtime.connectors["KV"], other, SS, public_pem)[1]
    assert "signature does not verify" in verify_substream(runtime.connectors["KV"], other, SS,
                                                           Signer(ed25519_pem()).public_pem)[1]
