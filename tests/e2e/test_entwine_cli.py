"""binge's entwine example, for real: a ticker daemon, two pipelines (`agglo run`) anchoring to it, the CLI."""

from __future__ import annotations

import json
import pathlib
import sqlite3
import subprocess

import orjson
import pytest
from _servers import AGGLO, Server, json_lines, request, run_agglo
from builders import BINGE
from entwine_world import ed25519_pem, rsa_pem

SS_A = "e546e731-2b86-43cd-b847-764f437a7835"
SS_B = "ed94a517-f030-4aa6-b390-6283ad24cab3"
EVENTS = 100


class TickerServer(Server):
    @property
    def argv(self) -> list[str]:
        return [*AGGLO, "ticker", "serve", "--port", str(self.port), *self.extra]


def adapt(name: str, tmp: pathlib.Path, port: int, interval: int | None = None) -> pathlib.Path:
    """binge's config with embedded connectors: SQLite state, file objects, local files for its search index."""
    cfg = json.loads((BINGE / f"entwine__binge-{name}.json").read_text())
    side = tmp / name
    embedded = {"KVStore": f"sqlite:{side}/state.db", "ObjectStore": f"file:{side}/objects",
                "SearchIndex": str(side / "search-index"), f"LocalFileFor{name.upper()}": str(side / "out")}
    for ext in cfg["externalSystems"]:
        ext["connectionString"] = embedded[ext["name"]]
        if ext["name"] == "SearchIndex":
            ext["externalType"] = "ExternalLocalFile"
    for d in cfg["processDefinitions"]:
        if "entwine" in d:
            d["entwine"]["pemPath"] = str(tmp / f"{name}.pem")
            d["entwine"]["tickerEndpoint"] = f"127.0.0.1:{port}"
            if interval is not None:
                d["entwine"]["tickerInterval"] = interval
    path = tmp / f"binge-{name}{'' if interval is None else interval}.json"
    path.write_text(json.dumps(cfg))
    return path


def events(tmp: pathlib.Path, name: str, start: int, n: int) -> pathlib.Path:
    path = tmp / f"events-{name}-{start}.jsonl"
    path.write_bytes(b"".join(orjson.dumps({"story": f"{name}-{i}", "n": i}) + b"\n" for i in range(start, start + n)))
    return path


@pytest.fixture(scope="module")
def entwined(tmp_path_factory):
    """The ticker ticking on its own, and binge-a and binge-b each running 100 events at the same time."""
    tmp = tmp_path_factory.mktemp("entwine")
    (tmp / "a.pem").write_bytes(rsa_pem("pkcs1"))
    (tmp / "b.pem").write_bytes(ed25519_pem())
    ticker = TickerServer(tmp / "none", tmp, "--interval", "0.05", "--state", f"sqlite:{tmp}/ticker.db",
                          log_name="ticker").start()
    configs = {name: adapt(name, tmp, ticker.port) for name in ("a", "b")}
    runs = {name: subprocess.Popen([*AGGLO, "run", "-c", str(configs[name]), "-i", str(events(tmp, name, 0, EVENTS))],
                                   cwd=tmp, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            for name in ("a", "b")}
    outputs = {}
    for name, proc in runs.items():
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err.decode()
        outputs[name] = json_lines(out)
    yield tmp, ticker, configs, outputs
    ticker.stop()


def _hb(port: int, lhs: tuple, rhs: tuple) -> dict:
    status, body = request(port, "GET", "/api/v1/happenedBefore/" + "/".join(map(str, (*lhs, *rhs))))
    assert status == 200, body
    return body


def _ref(output: dict) -> tuple[str, str, int]:
    return output["entwinedSubStreamID"], output["entwineUuid"], output["entwinedSubstreamIndex"]


def test_both_pipelines_entwine_every_event_with_binge_outputs(entwined) -> None:
    tmp, _, _, outputs = entwined
    for name, sub_stream in (("a", SS_A), ("b", SS_B)):
        outs = outputs[name]
        assert len(outs) == EVENTS
        assert sorted(o["entwinedSubstreamIndex"] for o in outs) == list(range(1, EVENTS + 1))
        assert {o["entwinedSubStreamID"] for o in outs} == {sub_stream}
        assert all(o["bingeProcess"] == name.upper() and o["entwinedObjectDescriptor"] == f"file:{tmp}/{name}/objects"
                   for o in outs)
        stored = json.loads((tmp / name / "objects" / outs[7]["entwinedObjectKey"]).read_text())
        assert stored["story"] == f"{name}-7"
        assert len(list((tmp / name / "out").iterdir())) == EVENTS  # binge's tee after entwine


def test_happened_before_holds_for_consecutive_anchors_and_never_reversed(entwined) -> None:
    _, ticker, _, outputs = entwined
    cross_ordered = 0
    for name, other in (("a", "b"), ("b", "a")):
        outs = sorted(outputs[name], key=lambda o: o["entwinedSubstreamIndex"])
        for prev, nxt in zip(outs, outs[1:], strict=False):  # interval 1: each message its own anchor window
            assert _hb(ticker.port, _ref(prev), _ref(nxt))["order"] == "before"
            assert _hb(ticker.port, _ref(nxt), _ref(prev))["happenedBefore"] is False
        others = sorted(outputs[other], key=lambda o: o["entwinedSubstreamIndex"])
        for o in outs[::9]:
            for p in others[::11]:
                answer = _hb(ticker.port, _ref(o), _ref(p))
                reverse = _hb(ticker.port, _ref(p), _ref(o))
                lw, rw = answer["lhsWindow"], answer["rhsWindow"]
                assert answer["happenedBefore"] == (lw["before"] <= rw["after"])
                assert not (answer["happenedBefore"] and reverse["happenedBefore"])
                cross_ordered += answer["happenedBefore"]
    assert cross_ordered > 0
    # The ticker's chain holds both substreams' anchors and ticks of its own (--interval) in between.
    status, body = request(ticker.port, "GET", "/api/v1/ticks?from=0&to=999")
    assert status == 200
    kinds = [t["subStreamID"] for t in body["ticks"]]
    assert kinds.count(SS_A) >= EVENTS and kinds.count(SS_B) >= EVENTS and kinds[1:].count("") > 0
    assert [t["idx"] for t in body["ticks"]] == list(range(len(kinds)))


def test_one_anchor_window_is_unordered_and_the_cli_says_so(entwined) -> None:
    tmp, ticker, _, outputs = entwined
    wide = adapt("a", tmp, ticker.port, interval=5)  # the same substream, anchoring every 5 messages now
    proc = run_agglo(["run", "-c", str(wide), "-i", str(events(tmp, "a", EVENTS, 5))], tmp)
    assert proc.returncode == 0, proc.stderr.decode()
    later = sorted(json_lines(proc.stdout), key=lambda o: o["entwinedSubstreamIndex"])
    assert [o["entwinedSubstreamIndex"] for o in later] == list(range(EVENTS + 1, EVENTS + 6))
    ref = [":".join(map(str, _ref(o))) for o in later]
    url = f"http://127.0.0.1:{ticker.port}"
    same = run_agglo(["entwine", "happened-before", "--ticker", url, ref[0], ref[1]], tmp)
    assert same.returncode == 1 and same.stdout.decode().startswith("unordered:"), same.stdout
    first_a = min(outputs["a"], key=lambda o: o["entwinedSubstreamIndex"])
    ordered = run_agglo(["entwine", "happened-before", "--ticker", url, ":".join(map(str, _ref(first_a))), ref[4]],
                        tmp)
    assert ordered.returncode == 0 and ordered.stdout.decode().startswith("before:"), ordered.stdout
    reversed_ = run_agglo(["entwine", "happened-before", "--ticker", url, ref[4], ":".join(map(str, _ref(first_a)))],
                          tmp)
    assert reversed_.returncode == 1 and reversed_.stdout.decode().startswith("after:")
    bad = run_agglo(["entwine", "happened-before", "--ticker", url, "nonsense", ref[0]], tmp)
    assert bad.returncode == 2 and b"SUBSTREAM:UUID:INDEX" in bad.stderr


def test_verify_passes_then_names_the_first_broken_link(entwined) -> None:
    tmp, ticker, configs, outputs = entwined
    ok = run_agglo(["entwine", "verify", "-c", str(configs["b"]), "--ticker", f"127.0.0.1:{ticker.port}"], tmp)
    assert ok.returncode == 0, ok.stdout
    assert f"substream {SS_B}: ok ({EVENTS + 1} messages, genesis signature checked)" in ok.stdout.decode()
    # One changed byte in one stored object.
    target = min(outputs["b"], key=lambda o: o["entwinedSubstreamIndex"] if o["entwinedSubstreamIndex"] > 30 else 999)
    obj = tmp / "b" / "objects" / target["entwinedObjectKey"]
    original = obj.read_bytes()
    obj.write_bytes(original.replace(b'"story":"b-', b'"story":"B-'))
    broken = run_agglo(["entwine", "verify", "-c", str(configs["b"])], tmp)
    obj.write_bytes(original)
    assert broken.returncode == 1
    assert f"BROKEN at message {target['entwinedSubstreamIndex']} " in broken.stdout.decode(), broken.stdout
    assert "does not match its digest" in broken.stdout.decode()
    # A message rewritten in the state store.
    db = sqlite3.connect(tmp / "b" / "state.db")
    key = f"entwine/{SS_B}/idx/40"
    [(raw,)] = db.execute("SELECT value FROM kv WHERE key = ?", (key,)).fetchall()
    msg = orjson.loads(raw)
    db.execute("UPDATE kv SET value = ? WHERE key = ?", (orjson.dumps({**msg, "ts": msg["ts"] + 1}), key))
    db.commit()
    broken = run_agglo(["entwine", "verify", "-c", str(configs["b"])], tmp)
    db.execute("UPDATE kv SET value = ? WHERE key = ?", (raw, key))
    db.commit()
    db.close()
    assert broken.returncode == 1 and "BROKEN at message 40 " in broken.stdout.decode()
    assert "signature does not verify" in broken.stdout.decode()


def test_concurrent_instances_on_one_substream_never_fork_it(tmp_path) -> None:
    (tmp_path / "a.pem").write_bytes(rsa_pem("pkcs8"))
    ticker = TickerServer(tmp_path / "none", tmp_path, "--state", f"sqlite:{tmp_path}/ticker.db",
                          log_name="ticker").start()
    try:
        config = adapt("a", tmp_path, ticker.port, interval=3)
        runs = [subprocess.Popen([*AGGLO, "run", "-c", str(config), "-i", str(events(tmp_path, "a", start, 20))],
                                 cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
                for start in (0, 1000)]
        for proc in runs:
            out, err = proc.communicate(timeout=120)
            assert proc.returncode == 0, err.decode()
            assert len(json_lines(out)) == 20
        verified = run_agglo(["entwine", "verify", "-c", str(config)], tmp_path)
        assert verified.returncode == 0 and "ok (41 messages" in verified.stdout.decode(), verified.stdout
    finally:
        ticker.stop()


def test_two_ticker_servers_on_one_dynamo_table_keep_one_chain(aws, tmp_path) -> None:
    """`agglo ticker serve --state dynamo:…` twice on one table (moto): one key, one chain, ticked from both."""
    from concurrent.futures import ThreadPoolExecutor

    from agglo_core.entwine.ticker import verify_ticks
    from handlers.connectors.aws import client

    client("dynamodb").create_table(TableName="ticker", KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
                                    AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
                                    BillingMode="PAY_PER_REQUEST")
    spec = f"dynamo:tableName=ticker,endpoint={aws},prefix=e2e/"
    servers = [TickerServer(tmp_path / "none", tmp_path, "--state", spec, log_name=f"ticker{i}").start()
               for i in range(2)]
    try:
        keys = {request(s.port, "GET", "/api/v1/publicKey")[1]["publicKey"] for s in servers}
        assert len(keys) == 1  # the second server found the key the first one made

        def ticks(port: int) -> list[int]:
            answers = [request(port, "POST", "/api/v1/tick", b"{}") for _ in range(8)]
            assert all(status == 200 for status, _ in answers), answers
            return [body["tickerMessage"]["idx"] for _, body in answers]

        with ThreadPoolExecutor(4) as pool:
            answered = [i for batch in pool.map(ticks, [s.port for s in servers] * 2) for i in batch]
        status, body = request(servers[1].port, "GET", f"/api/v1/ticks?from=0&to={2 + 4 * 8}")
        assert status == 200 and len(body["ticks"]) == 2 + len(answered)  # a tick per server start, ours, none more
        assert sorted(answered) == list(range(2, 2 + len(answered)))
        assert verify_ticks(body["ticks"], keys.pop()) is None
    finally:
        for s in servers:
            s.stop()
