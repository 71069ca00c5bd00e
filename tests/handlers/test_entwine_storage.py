"""Entwine's storage: the head check in every embedded KV connector, the ticker's state and its HTTP app."""

from __future__ import annotations

import io
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import orjson
import pytest
from builders import config, external
from entwine_world import ed25519_pem, rsa_pem, ticker_server

from agglo_core import Record, compile_plan
from agglo_core.config import External
from agglo_core.effects import CompareAndPut, GetItems
from agglo_core.entwine.chain import Head, append
from agglo_core.entwine.crypto import Signer
from agglo_core.entwine.ticker import TickerError, verify_ticks
from handlers.connectors import default_registry
from handlers.entwine.cli import verify_substream
from handlers.entwine.ticker import TickerApp, ticker_signer
from handlers.entwine.ticker_state import MAX_DYNAMO_PROOF, open_state
from handlers.runtime.driver import Runtime

SS = "e546e731-2b86-43cd-b847-764f437a7835"


@pytest.fixture(params=["mem", "sqlite", "redis", "dynamo"])
def kv(request, tmp_path):
    if request.param == "dynamo":
        request.getfixturevalue("aws")
        from handlers.connectors.aws import client

        client("dynamodb").create_table(TableName="state", KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
                                        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
                                        BillingMode="PAY_PER_REQUEST")
        registry, cs = default_registry(), "dynamo:tableName=state"
    else:
        registry = default_registry()
        cs = {"mem": "mem:t", "sqlite": f"sqlite:{tmp_path}/state.db"}.get(request.param) or \
            request.getfixturevalue("redis_kv_url") + "?prefix=p:"
    return registry.build(External.model_validate(
        {"externalType": "ExternalKVStore", "name": "KV", "connectionString": cs}))


def test_compare_and_put_moves_the_head_only_from_where_the_writer_saw_it(kv) -> None:
    def cas(expected, writes, absent=()):
        [ok] = kv.perform([CompareAndPut("KV", "head", expected, tuple(writes), tuple(absent))])
        return ok

    assert cas("nope", [("head", {"uuid": "a"})]) is False         # no head yet: only expected None wins
    assert cas(None, [("head", {"uuid": "a"}), ("m/a", {"idx": 1})]) is True
    assert cas(None, [("head", {"uuid": "x"})]) is False             # someone else's head is there now
    assert cas("a", [("head", {"uuid": "b"}), ("m/b", {"idx": 2})], absent=["m/a"]) is False  # a duplicate
    [values] = kv.perform([GetItems("KV", ("head", "m/a", "m/b", "missing"))])
    assert values == ({"uuid": "a"}, {"idx": 1}, None, None)         # a refused write wrote nothing
    assert cas("a", [("head", {"uuid": "b"}), ("m/b", {"idx": 2})], absent=["m/b"]) is True
    [values] = kv.perform([GetItems("KV", ("head", "m/b"))])
    assert values == ({"uuid": "b"}, {"idx": 2})


def test_the_stage_appends_and_anchors_through_every_store(kv, tmp_path) -> None:
    pem = rsa_pem("pkcs8")
    with ticker_server(f"sqlite:{tmp_path}/ticker.db") as (endpoint, app):
        cfg = config({"entwine": {"name": "E", "streamStateStore": "KV", "objectStore": "Objects",
                                  "pemPath": "k.pem", "subStreamID": SS, "tickerEndpoint": endpoint,
                                  "tickerInterval": 3}},
                     externals=({"externalType": "ExternalKVStore", "name": "KV", "connectionString": "mem:unused"},
                                external("ExternalObjectStore", "Objects", f"file:{tmp_path}/objects")))
        runtime = Runtime.build(compile_plan(cfg, {"k.pem": pem}), default_registry())
        runtime.connectors["KV"] = kv
        for batch in ([f"r#{i}" for i in range(5)], ["r#5", "r#6", "r#2"]):  # r#2 again: a redelivery
            outcomes = runtime.process([Record(rid, {"rid": rid}) for rid in batch])
            assert all(o.ok for o in outcomes), [o.errors for o in outcomes]
        assert outcomes[2].outputs[0][1]["internal:entwine:output"][0]["subStreamIndex"] == 3
        assert verify_substream(kv, runtime.connectors["Objects"], SS, Signer(pem).public_pem,
                                app.signer.public_pem) == (8, None)
        [[head]] = kv.perform([GetItems("KV", (f"entwine/{SS}/head",))])
        assert head["idx"] == 7 and head["anchoredIdx"] == 6


def _request(app: TickerApp, method: str, path: str, body: bytes | None = None) -> tuple[int, dict]:
    environ = {"REQUEST_METHOD": method, "PATH_INFO": path, "QUERY_STRING": "",
               "CONTENT_LENGTH": str(len(body or b"")), "wsgi.input": io.BytesIO(body or b"")}
    status = []
    chunks = app(environ, lambda s, h: status.append(s))
    return int(status[0].split()[0]), orjson.loads(b"".join(chunks))


def _ticker_table(name: str = "ticker") -> None:
    from handlers.connectors.aws import client

    client("dynamodb").create_table(TableName=name, KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
                                    AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
                                    BillingMode="PAY_PER_REQUEST")


@pytest.fixture(params=["sqlite", "redis", "dynamo"])
def state_spec(request, tmp_path):
    if request.param == "sqlite":
        return f"sqlite:{tmp_path}/ticker.db"
    if request.param == "dynamo":
        endpoint = request.getfixturevalue("aws")
        _ticker_table()
        return f"dynamo:tableName=ticker,endpoint={endpoint},prefix=t1/"
    return request.getfixturevalue("redis_kv_url") + "?prefix=t1:"


def test_the_ticker_app_keeps_its_chain_and_anchors_across_restarts(state_spec) -> None:
    state = open_state(state_spec)
    signer = ticker_signer(state, None)
    app = TickerApp(state, signer, max_body=64 << 10)
    sub = Signer(ed25519_pem())
    assert _request(app, "POST", "/api/v1/tick")[1]["tickerMessage"]["idx"] == 0
    status, _ = _request(app, "POST", "/api/v1/register",
                         orjson.dumps({"subStreamID": SS, "publicKey": sub.public_pem}))
    assert status == 200
    status, genesis = _request(app, "GET", f"/api/v1/createGenesisProof/{SS}")
    assert status == 200 and genesis["message"]["subStreamID"] == SS
    messages, _ = append(Head.at_genesis(genesis["message"]),
                         [("00000000-0000-5000-8000-000000000001", 1, "mem:o", "k", "d")], SS, sub)
    proof = orjson.dumps({"subStreamID": SS, "proof": [genesis["message"], *messages]})
    status, receipt = _request(app, "POST", "/api/v1/anchor", proof)
    assert status == 200 and receipt["tickerMessage"]["subStreamID"] == SS
    assert _request(app, "POST", "/api/v1/anchor", proof)[0] == 409  # a replay
    # Restart: the same key (kept in the state), the same chain, the same anchors.
    state2 = open_state(state_spec)
    app2 = TickerApp(state2, ticker_signer(state2, None))
    assert app2.signer.public_pem == signer.public_pem
    status, start = _request(app2, "GET", f"/api/v1/getProofStartUuid/{SS}")
    assert start == {"uuid": messages[0]["uuid"], "idx": 1, "tickerUuid": receipt["tickerMessage"]["uuid"]}
    assert _request(app2, "POST", "/api/v1/tick")[1]["tickerMessage"]["idx"] == 2


def test_the_ticker_app_refuses_bad_requests_with_a_reason(tmp_path) -> None:
    state = open_state(f"sqlite:{tmp_path}/t.db")
    app = TickerApp(state, ticker_signer(state, None), max_body=1024)
    assert _request(app, "POST", "/api/v1/anchor", b"x" * 2000)[0] == 413
    assert _request(app, "POST", "/api/v1/anchor", b"[1]") == (400, {"error": "body must be a JSON object"})
    assert _request(app, "GET", "/api/v1/tick")[0] == 405
    assert _request(app, "GET", "/api/v1/nope")[0] == 404
    status, body = _request(app, "POST", "/api/v1/anchor", orjson.dumps({"subStreamID": SS, "proof": []}))
    assert status == 403 and "not registered" in body["error"]
    status, body = _request(app, "GET", f"/api/v1/happenedBefore/{SS}/u/1/{SS}/u/x")
    assert status == 400 and "not an index" in body["error"]
    with pytest.raises(ValueError, match="sqlite:PATH, redis://.* or dynamo:tableName=T"):
        open_state("mysql://localhost/t")
    with pytest.raises(ValueError, match="dynamo: needs tableName"):
        open_state("dynamo:region=eu-west-1")


def test_ticker_processes_sharing_a_state_never_fork_the_chain(state_spec) -> None:
    """Ticker instances with their own connections tick the same state at once: every tick extends the last."""
    threads, per_thread = 4, 8
    apps = [TickerApp(state, ticker_signer(state, None)) for state in (open_state(state_spec) for _ in range(threads))]
    assert len({app.signer.public_pem for app in apps}) == 1  # the key made once, kept in the state
    barrier = threading.Barrier(threads)

    def ticks(app: TickerApp) -> list[dict]:
        barrier.wait()
        return [app.tick() for _ in range(per_thread)]

    with ThreadPoolExecutor(threads) as pool:
        answered = [t for batch in pool.map(ticks, apps) for t in batch]
    assert sorted(t["idx"] for t in answered) == list(range(threads * per_thread))  # no index handed out twice
    chain = apps[0].call(lambda t: [t.state.get(f"tick/{i}") for i in range(threads * per_thread + 1)])
    assert chain[-1] is None and chain[:-1] == sorted(answered, key=lambda t: t["idx"])  # every answer is kept
    assert verify_ticks(chain[:-1], apps[0].signer.public_pem) is None  # each prevUuid is the tick before


def test_a_dynamo_state_commits_a_request_whole_or_refuses_it_whole(aws) -> None:
    _ticker_table("shared")
    state = open_state("dynamo:tableName=shared")
    other = open_state("dynamo:tableName=shared,prefix=other/")  # a second ticker in the same table

    def write(n: int) -> Any:
        return lambda tx: [tx.put(f"k/{i}", {"i": i, "n": n}) for i in range(n)]

    state.run(write(99))  # the most one transaction holds besides the version item
    with pytest.raises(TickerError, match="writes 100 keys .* at most 99") as refused:
        state.run(write(100))
    assert refused.value.status == 413
    assert state.run(lambda tx: [tx.get(f"k/{i}") for i in (0, 98, 99)]) == [{"i": 0, "n": 99},
                                                                              {"i": 98, "n": 99}, None]
    assert other.run(lambda tx: tx.get("k/0")) is None
    other.run(lambda tx: tx.put("k/0", "theirs"))
    assert state.run(lambda tx: tx.get("k/0")) == {"i": 0, "n": 99}

    def sees_own_writes(tx: Any) -> Any:
        tx.put("k/0", "mine")
        return tx.get("k/0")

    assert state.run(sees_own_writes) == "mine"
    assert other.run(lambda tx: tx.get("k/0")) == "theirs"


def test_a_dynamo_ticker_anchors_proofs_up_to_the_documented_length(aws) -> None:
    _ticker_table()
    state = open_state("dynamo:tableName=ticker")
    app = TickerApp(state, ticker_signer(state, None))
    sub = Signer(ed25519_pem())
    _request(app, "POST", "/api/v1/register", orjson.dumps({"subStreamID": SS, "publicKey": sub.public_pem}))
    genesis = _request(app, "GET", f"/api/v1/createGenesisProof/{SS}")[1]["message"]
    messages, _ = append(Head.at_genesis(genesis), [(f"00000000-0000-5000-8000-{i:012d}", 1, "mem:o", f"k{i}", "d")
                                                    for i in range(1, MAX_DYNAMO_PROOF + 2)], SS, sub)
    too_long = orjson.dumps({"subStreamID": SS, "proof": [genesis, *messages]})
    status, body = _request(app, "POST", "/api/v1/anchor", too_long)
    assert status == 413 and f"tickerInterval at most {MAX_DYNAMO_PROOF}" in body["error"], body
    longest = orjson.dumps({"subStreamID": SS, "proof": [genesis, *messages[:MAX_DYNAMO_PROOF]]})
    status, receipt = _request(app, "POST", "/api/v1/anchor", longest)
    assert status == 200 and receipt["tickerMessage"]["subStreamID"] == SS
    assert _request(app, "GET", f"/api/v1/getProofStartUuid/{SS}")[1]["idx"] == MAX_DYNAMO_PROOF
