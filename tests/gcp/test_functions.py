"""The Cloud Functions adapter under functions-framework's real server, fed by the Pub/Sub emulator.

A push subscription delivers each message to the function over HTTP, as Pub/Sub
does in production; state goes to a real redis-server; poison messages go to a
dead-letter topic; a transient failure (an HTTP tee answering 503 once) makes
the function refuse the message, Pub/Sub pushes it again, and it counts once.
"""

from __future__ import annotations

import base64
import json
import pathlib
import time
import urllib.error
import urllib.request
import uuid
from types import SimpleNamespace

import pytest
from builders import PARTITION, config, external, kv
from servers import JsonHook, start_function

PROJECT = "agglo-test"
REPO = pathlib.Path(__file__).resolve().parents[2]


def pubsub_call(host: str, method: str, path: str, body: dict | None = None) -> dict:
    request = urllib.request.Request(f"http://{host}/v1/{path}", method=method,
                                     data=json.dumps(body or {}).encode(),
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as resp:
        return json.loads(resp.read() or b"{}")


def flaky_hook() -> JsonHook:
    """Answers 503 to the first request of an event marked ``flaky`` (per Idempotency-Key), 200 to the rest."""
    seen: dict[str, int] = {}
    bodies: list[dict] = []

    def respond(hook: JsonHook, headers: dict, body: dict) -> tuple[int, bytes]:
        key = headers["Idempotency-Key"]
        seen[key] = seen.get(key, 0) + 1
        if body.get("flaky") and seen[key] == 1:
            return 503, b"{}"
        bodies.append(body)
        return 200, b"{}"

    hook = JsonHook(respond)
    hook.seen, hook.bodies = seen, bodies  # type: ignore[attr-defined]
    return hook


@pytest.fixture
def pipeline(pubsub_emulator, redis_kv_url, tmp_path):
    """A counting pipeline behind a push subscription; poison goes to a dead-letter topic."""
    hook = flaky_hook()
    run = uuid.uuid4().hex[:8]  # the emulator lives for the session: names of this test's own
    events, letters = f"events-{run}", f"dead-letters-{run}"
    for topic in (events, letters):
        pubsub_call(pubsub_emulator, "PUT", f"projects/{PROJECT}/topics/{topic}")
    pubsub_call(pubsub_emulator, "PUT", f"projects/{PROJECT}/subscriptions/{letters}-pull",
                {"topic": f"projects/{PROJECT}/topics/{letters}"})
    cfg = config({"annotator": {"name": "Mark", "annotations": [{"fieldKey": "seen", "value": "yes"}]}},
                 {"aggregator": {"name": "Count", "stateStore": "State", "forwardState": True,
                                 "aggregation": {"key": "n", "aggregationType": "AggSum"}}},
                 {"tee": {"name": "Hook", "outputConnectorRef": "Web"}},
                 externals=(kv(cs=redis_kv_url), external("ExternalHttp", "Web", hook.url),
                            external("ExternalPubSub", "DeadLetters",
                                     f"pubsub:projects/{PROJECT}/topics/{letters}")))
    path = tmp_path / "pipeline.json"
    path.write_text(json.dumps(cfg))
    server, url = start_function(str(REPO / "handlers" / "gcp_functions.py"), "on_http", {
        "AGGLO_CONFIG": str(path), "AGGLO_DEAD_LETTER": "DeadLetters", "PUBSUB_EMULATOR_HOST": pubsub_emulator,
        "GOOGLE_CLOUD_PROJECT": PROJECT})
    pubsub_call(pubsub_emulator, "PUT", f"projects/{PROJECT}/subscriptions/{events}-push", {
        "topic": f"projects/{PROJECT}/topics/{events}", "pushConfig": {"pushEndpoint": url},
        "ackDeadlineSeconds": 10, "retryPolicy": {"minimumBackoff": "1s", "maximumBackoff": "2s"}})
    yield SimpleNamespace(hook=hook, url=url, server=server, events=events, letters=letters)
    server.stop()
    hook.close()


def publish(host: str, topic: str, *datas: bytes) -> None:
    pubsub_call(host, "POST", f"projects/{PROJECT}/topics/{topic}:publish",
                {"messages": [{"data": base64.b64encode(d).decode(), "attributes": {"source": "test"}}
                              for d in datas]})


def state_total(redis_url: str) -> float | None:
    import redis

    client = redis.Redis.from_url(redis_url)
    value = client.hget(f"agg/{PARTITION}/P/Count/n:AggSum", "value")
    return None if value is None else float(value)


def dead_letters(host: str, topic: str) -> list[dict]:
    answer = pubsub_call(host, "POST", f"projects/{PROJECT}/subscriptions/{topic}-pull:pull",
                         {"maxMessages": 100, "returnImmediately": True})
    messages = answer.get("receivedMessages", [])
    if messages:
        pubsub_call(host, "POST", f"projects/{PROJECT}/subscriptions/{topic}-pull:acknowledge",
                    {"ackIds": [m["ackId"] for m in messages]})
    return [json.loads(base64.b64decode(m["message"]["data"])) for m in messages]


def wait_for(predicate, timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    raise AssertionError("timed out waiting")


def test_pushed_messages_are_counted_poison_dead_lettered_transient_redelivered_once(
        pipeline, pubsub_emulator, redis_kv_url):
    hook = pipeline.hook
    publish(pubsub_emulator, pipeline.events, *(json.dumps({"n": i}).encode() for i in (1, 2, 4)), b"not json",
            json.dumps({"n": 8, "seen": "already"}).encode(), json.dumps({"n": 16, "flaky": True}).encode())
    wait_for(lambda: state_total(redis_kv_url) == 1 + 2 + 4 + 16 and len(hook.bodies) == 4)
    letters = []
    wait_for(lambda: len(letters.extend(dead_letters(pubsub_emulator, pipeline.letters)) or letters) == 2)
    time.sleep(3)  # time for any wrong redelivery to show up
    assert state_total(redis_kv_url) == 1 + 2 + 4 + 16  # the flaky message was pushed twice, counted once
    assert sorted(b["n"] for b in hook.bodies) == [1, 2, 4, 16]
    assert max(hook.seen.values()) == 2 and len(hook.seen) == 4  # one retry, under the same Idempotency-Key
    assert all(b["internal:pubsub"]["attributes"] == {"source": "test"} for b in hook.bodies)
    letters += dead_letters(pubsub_emulator, pipeline.letters)
    assert len(letters) == 2  # each poison message dead-lettered once, not looping
    by_error = sorted(letters, key=lambda d: d["errors"][0]["error"])
    assert by_error[0]["errors"][0]["process"] == "Mark" and by_error[0]["event"]["n"] == 8
    assert "not base64 JSON" in by_error[1]["errors"][0]["error"] and by_error[1]["event"] is None


def post(url: str, body: bytes, headers: dict | None = None) -> tuple[int, dict]:
    request = urllib.request.Request(url, data=body, method="POST",
                                     headers={"Content-Type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(request, timeout=30) as resp:
            return resp.status, json.loads(resp.read() or b"{}")
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"{}")


def test_direct_posts_answer_like_agglo_serve(pipeline, redis_kv_url):
    status, _ = post(pipeline.url, json.dumps({"n": 1, "seen": "x"}).encode(),
                     {"X-Cloud-Trace-Context": "0af7651916cd43dd8448eb211c80319c/123;o=1"})
    assert status == 422
    traced = [json.loads(line) for line in pipeline.server.log().splitlines() if '"record failed' in line]
    assert traced[-1]["logging.googleapis.com/trace"] == \
        "projects/agglo-test/traces/0af7651916cd43dd8448eb211c80319c"
    key = {"Idempotency-Key": "order-1"}
    status, answer = post(pipeline.url, json.dumps([{"n": 3}, {"n": 5}]).encode(), key)
    assert status == 200 and [o["n"] for o in answer["outputs"]] == [3, 5] and answer["errors"] == []
    assert [o["internal:aggregation:P"]["n:AggSum"]["value"] for o in answer["outputs"]] == [3, 8]
    assert [r["id"] for r in answer["results"]] == ["http:order-1#1", "http:order-1#2"]
    again, answer = post(pipeline.url, json.dumps([{"n": 3}, {"n": 5}]).encode(), key)
    assert again == 200 and state_total(redis_kv_url) == 8  # the same key and body again: the same records
    conflict, answer = post(pipeline.url, json.dumps([{"n": 3}]).encode(), key)
    assert conflict == 409 and "order-1" in answer["error"] and state_total(redis_kv_url) == 8
    # Without a key, the same body is new data: it counts again.
    assert post(pipeline.url, json.dumps({"n": 2}).encode())[0] == 200
    assert post(pipeline.url, json.dumps({"n": 2}).encode())[0] == 200
    assert state_total(redis_kv_url) == 12
    status, answer = post(pipeline.url, json.dumps({"n": 1, "seen": "x"}).encode())
    assert status == 422 and answer["errors"][0]["process"] == "Mark"
    # Elements that are not objects are their own errors; the object among them runs.
    status, answer = post(pipeline.url, b'[1, {"n": 16}, "x"]')
    assert status == 422 and [len(r["errors"]) for r in answer["results"]] == [1, 0, 1]
    assert state_total(redis_kv_url) == 28
    assert post(pipeline.url, b"[]")[0] == 400 and post(pipeline.url, b"{nope")[0] == 400


def test_pubsub_outputs_keep_ordering_keys_and_carry_the_tee_id(pubsub_emulator, monkeypatch):
    from agglo_core import Put
    from handlers.connectors import pubsub

    monkeypatch.setenv("PUBSUB_EMULATOR_HOST", pubsub_emulator)
    pubsub.publisher.cache_clear()
    topic = f"out-{uuid.uuid4().hex[:8]}"
    pubsub_call(pubsub_emulator, "PUT", f"projects/{PROJECT}/topics/{topic}")
    pubsub_call(pubsub_emulator, "PUT", f"projects/{PROJECT}/subscriptions/{topic}-pull",
                {"topic": f"projects/{PROJECT}/topics/{topic}", "enableMessageOrdering": True})
    output = pubsub.PubSubOutput(f"projects/{PROJECT}/topics/{topic}")
    bodies = [{"n": i, "internal:pubsub": {"orderingKey": "k1" if i % 2 else ""}} for i in range(6)]
    assert output.perform([Put("Out", f"id-{i}", b) for i, b in enumerate(bodies)]) == [None] * 6
    answer = pubsub_call(pubsub_emulator, "POST", f"projects/{PROJECT}/subscriptions/{topic}-pull:pull",
                         {"maxMessages": 10, "returnImmediately": True})
    got = {json.loads(base64.b64decode(m["message"]["data"]))["n"]: m["message"]
           for m in answer["receivedMessages"]}
    assert sorted(got) == list(range(6))
    assert [got[i].get("orderingKey", "") for i in range(6)] == ["", "k1", "", "k1", "", "k1"]
    assert [got[i]["attributes"]["agglo-id"] for i in range(6)] == [f"id-{i}" for i in range(6)]
    pubsub.publisher.cache_clear()
