"""``agglo serve`` (stateless) over real HTTP: gunicorn in a subprocess on a free port."""

from __future__ import annotations

import json
import pathlib
import sqlite3
from concurrent.futures import ThreadPoolExecutor

import orjson
import pytest
from _servers import (
    AGGLO,
    AGGLO_SCRIPT,
    PARTITION,
    Server,
    free_port,
    listening_addresses,
    post_json,
    request,
    run_agglo,
    write_config,
)
from builders import config, external, kv

PIPELINE = "Serve"
AGG = f"internal:aggregation:{PIPELINE}"


def serve_config(tmp: pathlib.Path) -> pathlib.Path:
    """Mark every event, sum someNum into SQLite, tee every event into a directory."""
    return write_config(tmp / "serve.json", config(
        {"annotator": {"name": "Mark", "annotations": [{"fieldKey": "seen", "value": "yes"}]}},
        {"aggregator": {"name": "Sum", "stateStore": "State", "forwardState": True,
                        "aggregation": {"key": "someNum", "aggregationType": "AggSum"}}},
        {"tee": {"name": "Out", "outputConnectorRef": "Files"}},
        externals=(kv("State", f"sqlite:{tmp / 'state.db'}"),
                   external("ExternalLocalFile", "Files", str(tmp / "tee"))),
        pipeline=PIPELINE))


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> pathlib.Path:
    return tmp_path_factory.mktemp("serve")


@pytest.fixture(scope="module")
def server(workdir):
    s = Server(serve_config(workdir), workdir, log_name="default").start()
    yield s
    s.stop()


@pytest.fixture(scope="module")
def small_server(workdir):
    """Another daemon on the same config, with a 1000-byte body limit and its own path."""
    s = Server(workdir / "serve.json", workdir, "--max-body", "1000", "--path", "/events", log_name="small").start()
    yield s
    s.stop()


def stored_sum(workdir: pathlib.Path) -> int:
    conn = sqlite3.connect(workdir / "state.db")
    try:
        rows = [json.loads(v) for (v,) in conn.execute("SELECT value FROM kv WHERE key NOT LIKE 'mark/%'")]
    finally:
        conn.close()
    assert len(rows) == 1, rows
    return rows[0]["value"]


def test_healthz(server):
    assert request(server.port, "GET", "/healthz") == (200, {"status": "ok"})


def test_binds_loopback_by_default(server):
    assert listening_addresses(server.port) == {"127.0.0.1"}
    banner = server.stdout_path.read_text().splitlines()[0]
    assert banner == f"agglo: serving {server.config} on http://127.0.0.1:{server.port}/binge"


def test_post_an_event(server, workdir):
    status, body = post_json(server.port, {"someNum": 5, "who": "post-an-event"})
    assert status == 200, body
    [out] = body["outputs"]
    assert {k: out[k] for k in ("someNum", "who", "seen", "internal:partitionID", "internal:name")} == {
        "someNum": 5, "who": "post-an-event", "seen": "yes", "internal:partitionID": PARTITION,
        "internal:name": PIPELINE}
    assert out[AGG]["someNum:AggSum"]["value"] == stored_sum(workdir)
    [entry] = out["internal:tee:output"]
    written = json.loads((workdir / "tee" / f"{entry['uuid']}.json").read_text())
    assert written == {k: v for k, v in out.items() if k != "internal:tee:output"}


def test_the_idempotency_key_names_the_record_and_without_one_every_post_is_new(server):
    def tee_uuid(event, **kw):
        status, body = post_json(server.port, event, **kw)
        assert status == 200, body
        return body["outputs"][0]["internal:tee:output"][0]["uuid"]

    # Two identical clicks are two records.
    a = tee_uuid({"who": "idem", "x": 1})
    assert tee_uuid({"who": "idem", "x": 1}) != a
    keyed = tee_uuid({"who": "idem", "x": 3}, headers={"Idempotency-Key": "k-1"})
    assert tee_uuid({"who": "idem", "x": 3}, headers={"Idempotency-Key": "k-1"}) == keyed
    assert keyed != a
    # The same key with another body is refused, and the key still names its first body.
    status, body = post_json(server.port, {"who": "idem", "x": 4}, headers={"Idempotency-Key": "k-1"})
    assert status == 409 and "k-1" in body["error"], body
    assert tee_uuid({"who": "idem", "x": 3}, headers={"Idempotency-Key": "k-1"}) == keyed


def test_an_array_is_one_record_per_element_each_with_its_own_result(server, workdir):
    before = stored_sum(workdir)
    events = [{"someNum": 1, "who": "array"}, {"seen": "already", "someNum": 100}, 7, {"someNum": 2, "who": "array"}]
    status, body = post_json(server.port, events, headers={"Idempotency-Key": "batch-1"})
    assert status == 422, body
    ids = [r["id"] for r in body["results"]]
    assert ids == [f"http:batch-1#{n}" for n in range(1, 5)]
    assert [len(r["outputs"]) for r in body["results"]] == [1, 0, 0, 1]
    assert [len(r["errors"]) for r in body["results"]] == [0, 1, 1, 0]
    assert "JSON object" in body["results"][2]["errors"][0]["error"]
    assert stored_sum(workdir) == before + 3
    # Sent again: the same records, whose state changes are not made twice.
    again = post_json(server.port, events, headers={"Idempotency-Key": "batch-1"})
    assert again[0] == 422 and stored_sum(workdir) == before + 3
    # Without a key, each element gets a fresh id.
    status, body = post_json(server.port, [{"someNum": 0}, {"someNum": 0}])
    assert status == 200, body
    assert len({r["id"] for r in body["results"]}) == 2


@pytest.mark.parametrize("body", [b'"a string"', b"42", b"null", b"[]"])
def test_post_json_that_is_not_an_object_is_400(server, body):
    status, answer = request(server.port, "POST", "/binge", body)
    assert status == 400
    assert "JSON object" in answer["error"]


@pytest.mark.parametrize("body", [b"{not json", b"", b'{"a": 1} trailing'])
def test_post_invalid_json_is_400(server, body):
    status, answer = request(server.port, "POST", "/binge", body)
    assert status == 400
    assert "not valid JSON" in answer["error"]


def test_wrong_path_is_404(server):
    status, answer = post_json(server.port, {"a": 1}, path="/nope")
    assert status == 404
    assert "/binge" in answer["error"]
    assert request(server.port, "GET", "/")[0] == 404
    # The queue's maintenance view exists only in durable mode.
    assert request(server.port, "GET", "/maintenance/queue")[0] == 404


def test_get_on_the_event_path_is_405(server):
    assert request(server.port, "GET", "/binge")[0] == 405


def test_a_record_whose_data_is_at_fault_is_422_naming_pipeline_and_process(server):
    status, answer = post_json(server.port, {"seen": "already", "someNum": 1})
    assert status == 422
    assert answer["outputs"] == []
    [err] = answer["errors"]
    assert (err["pipeline"], err["process"]) == (PIPELINE, "Mark")
    assert "seen" in err["error"] and "already" in err["error"]
    assert err["record"].startswith("http:")


def test_body_limit(small_server):
    port = small_server.port
    event = {"pad": ""}
    base = len(orjson.dumps(event))
    at_limit = orjson.dumps({"pad": "x" * (1000 - base)})
    over = orjson.dumps({"pad": "x" * (1001 - base)})
    assert (len(at_limit), len(over)) == (1000, 1001)
    status, answer = request(port, "POST", "/events", over)
    assert status == 413
    assert "1000" in answer["error"]
    status, answer = request(port, "POST", "/events", at_limit)
    assert status == 200, answer
    assert answer["outputs"][0]["pad"] == "x" * (1000 - base)
    assert request(port, "POST", "/events", b"x" * 100_000)[0] == 413
    # The default path is not served when another is given.
    assert post_json(port, {"a": 1})[0] == 404


def test_body_limit_without_content_length(small_server):
    port = small_server.port
    over = orjson.dumps({"pad": "y" * 2000})
    status, answer = request(port, "POST", "/events", over, chunked=True)
    assert status == 413, answer
    small = orjson.dumps({"pad": "y" * 300, "someNum": 0})
    status, answer = request(port, "POST", "/events", small, chunked=True)
    assert status == 200, answer
    assert answer["outputs"][0]["pad"] == "y" * 300


def test_concurrent_posts_lose_no_updates(server, workdir):
    before = stored_sum(workdir)
    events = [{"someNum": i + 1, "who": f"concurrent-{i}"} for i in range(50)]
    with ThreadPoolExecutor(max_workers=50) as pool:
        answers = list(pool.map(lambda e: post_json(server.port, e), events))
    assert [status for status, _ in answers] == [200] * 50, answers
    total = sum(e["someNum"] for e in events)
    assert stored_sum(workdir) == before + total
    # Each event saw the state right after its own update: 50 different running sums.
    seen = [body["outputs"][0][AGG]["someNum:AggSum"]["value"] for _, body in answers]
    assert len(set(seen)) == 50
    assert max(seen) == before + total
    assert min(seen) > before


@pytest.mark.parametrize("command", [AGGLO, AGGLO_SCRIPT], ids=["python-m", "console-script"])
def test_serve_refuses_a_bad_config_before_starting(tmp_path, command):
    bad = write_config(tmp_path / "bad.json", {"partitionUuid": "nope", "pipelines": []})
    port = free_port()
    proc = run_agglo(["serve", "-c", str(bad), "--port", str(port)], tmp_path, timeout=30, command=command)
    assert proc.returncode == 2, proc.stderr
    err = proc.stderr.decode()
    assert err.startswith("agglo: ") and "partitionUuid: 'nope' is not a UUID" in err
    assert "Traceback" not in err
    assert listening_addresses(port) == set()


def test_an_outside_failure_is_503_with_retry_after_and_the_same_post_later_counts_once(tmp_path):
    """The output refuses the first delivery: 503 tells the client to come back; the retry goes through."""
    import http.client

    from servers import JsonHook

    refusals = [1]

    def respond(hook, headers, body):
        if refusals:
            refusals.pop()
            return 503, b'"busy"'
        return 200, b"{}"

    hook = JsonHook(respond)
    cfg = write_config(tmp_path / "web.json", config(
        {"aggregator": {"name": "Sum", "stateStore": "State", "forwardState": True,
                        "aggregation": {"key": "someNum", "aggregationType": "AggSum"}}},
        {"tee": {"name": "Web", "outputConnectorRef": "Web"}},
        externals=(kv("State", f"sqlite:{tmp_path / 'state.db'}"), external("ExternalHttp", "Web", hook.url)),
        pipeline=PIPELINE))
    server = Server(cfg, tmp_path, log_name="web").start()
    try:
        def post() -> tuple[int, str | None, dict]:
            conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
            try:
                conn.request("POST", "/binge", body=b'{"someNum": 7}', headers={"Idempotency-Key": "k-7"})
                resp = conn.getresponse()
                return resp.status, resp.getheader("Retry-After"), json.loads(resp.read())
            finally:
                conn.close()

        status, retry_after, body = post()
        assert (status, retry_after) == (503, "1") and body["errors"][0]["transient"] is True
        status, _, body = post()
        assert status == 200 and body["outputs"][0][AGG]["someNum:AggSum"]["value"] == 7  # counted once
    finally:
        server.stop()
        hook.close()
