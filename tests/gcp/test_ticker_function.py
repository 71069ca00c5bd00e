"""The ticker as a function behind an HTTP trigger: functions-framework's real server, SQLite state."""

from __future__ import annotations

import json
import pathlib
import urllib.request

from servers import start_function

REPO = pathlib.Path(__file__).resolve().parents[2]
SS = "ed94a517-f030-4aa6-b390-6283ad24cab3"


def _call(url: str, method: str, body: dict | None = None) -> tuple[int, dict]:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def test_the_ticker_runs_as_an_http_function(tmp_path) -> None:
    from entwine_world import ed25519_pem

    from agglo_core.entwine.crypto import Signer

    server, url = start_function(str(REPO / "handlers" / "entwine" / "ticker.py"), "on_http",
                                 {"AGGLO_TICKER_STATE": f"sqlite:{tmp_path}/ticker.db"})
    try:
        status, first = _call(url + "/api/v1/tick", "POST", {})
        assert status == 200 and first["tickerMessage"]["idx"] == 0
        assert _call(url + "/api/v1/tick", "POST", {})[1]["tickerMessage"]["prevUuid"] == first["tickerMessage"]["uuid"]
        status, _ = _call(url + "/api/v1/register", "POST",
                          {"subStreamID": SS, "publicKey": Signer(ed25519_pem()).public_pem})
        assert status == 200
        status, genesis = _call(url + f"/api/v1/createGenesisProof/{SS}", "GET")
        assert status == 200 and genesis["message"]["idx"] == 0
        status, refused = _call(url + "/api/v1/anchor", "POST", {"subStreamID": SS, "proof": [genesis["message"]]})
        assert status == 400 and "at least one new one" in refused["error"]
    finally:
        server.stop()
