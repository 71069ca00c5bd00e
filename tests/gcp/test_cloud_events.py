"""CloudEvents (GCS ``object.v1.finalized``, Pub/Sub ``messagePublished``) through functions-framework's real server."""

from __future__ import annotations

import gzip
import json
import pathlib
import urllib.error
import urllib.request
import uuid

import pytest
from builders import PARTITION, config, external, kv
from servers import start_function

from handlers.sources import TriggerRecord

REPO = pathlib.Path(__file__).resolve().parents[2]


@pytest.fixture
def storage(gcs_emulator, monkeypatch):
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage

    monkeypatch.setenv("STORAGE_EMULATOR_HOST", gcs_emulator)
    client = storage.Client(project="agglo-test", credentials=AnonymousCredentials())
    names = {role: f"{role}-{uuid.uuid4().hex[:8]}" for role in ("input", "tees")}
    for name in names.values():
        client.create_bucket(name)
    return client, names


def cloud_event(url: str, kind: str, data: dict) -> int:
    """POST a CloudEvent in binary mode, as Eventarc delivers it."""
    request = urllib.request.Request(url, data=json.dumps(data).encode(), method="POST", headers={
        "Content-Type": "application/json", "ce-id": uuid.uuid4().hex, "ce-specversion": "1.0",
        "ce-type": kind, "ce-source": "//storage.googleapis.com/projects/_/buckets/" + data.get("bucket", "x"),
        "ce-subject": "objects/" + data.get("name", "")})
    try:
        with urllib.request.urlopen(request, timeout=60) as resp:
            return resp.status
    except urllib.error.HTTPError as e:
        return e.code


def test_a_finalized_object_runs_every_line_into_state_and_gcs_tees(storage, gcs_emulator, redis_kv_url, tmp_path):
    client, names = storage
    lines = [{"n": i} for i in range(1, 31)]
    blob = client.bucket(names["input"]).blob("day 1/events.jsonl.gz")
    blob.upload_from_string(gzip.compress("\n".join(json.dumps(e) for e in lines).encode()))
    blob.reload()
    cfg = config({"aggregator": {"name": "Sum", "stateStore": "State", "forwardState": True,
                                 "aggregation": {"key": "n", "aggregationType": "AggSum"}}},
                 {"tee": {"name": "Keep", "outputConnectorRef": "Tees"}},
                 externals=(kv(cs=redis_kv_url),
                            external("ExternalObjectStore", "Tees", f"gcs:bucketName={names['tees']},prefix=out/")))
    path = tmp_path / "pipeline.json"
    path.write_text(json.dumps(cfg))
    server, url = start_function(str(REPO / "handlers" / "gcp_functions.py"), "on_cloud_event",
                                 {"AGGLO_CONFIG": str(path), "STORAGE_EMULATOR_HOST": gcs_emulator},
                                 signature="cloudevent")
    try:
        data = {"bucket": names["input"], "name": "day 1/events.jsonl.gz", "generation": str(blob.generation)}
        assert cloud_event(url, "google.cloud.storage.object.v1.finalized", data) == 200, server.log()
        assert cloud_event(url, "google.cloud.storage.object.v1.finalized", data) == 200  # delivered twice
        assert cloud_event(url, "google.cloud.unknown.v1.event", data) >= 400
    finally:
        server.stop()
    import redis

    assert float(redis.Redis.from_url(redis_kv_url).hget(f"agg/{PARTITION}/P/Sum/n:AggSum", "value")) == sum(
        range(1, 31))  # the second delivery changed nothing
    tees = list(client.bucket(names["tees"]).list_blobs(prefix="out/"))
    assert len(tees) == 30
    bodies = sorted((json.loads(b.download_as_bytes()) for b in tees), key=lambda b: b["n"])
    assert bodies[-1]["internal:aggregation:P"]["n:AggSum"] == {"value": sum(range(1, 31))}


def test_pubsub_cloud_events_ack_poison_and_refuse_transient_failures(redis_kv_url, tmp_path):
    import base64

    cfg = config({"aggregator": {"name": "Sum", "stateStore": "State", "forwardState": True,
                                 "aggregation": {"key": "n", "aggregationType": "AggSum"}}},
                 {"tee": {"name": "Out", "outputConnectorRef": "Dead"}},
                 externals=(kv(cs=redis_kv_url), external("ExternalHttp", "Dead", "http://127.0.0.1:9/down")))
    path = tmp_path / "pipeline.json"
    path.write_text(json.dumps(cfg))
    server, url = start_function(str(REPO / "handlers" / "gcp_functions.py"), "on_cloud_event",
                                 {"AGGLO_CONFIG": str(path)}, signature="cloudevent")

    def message(data: bytes, mid: str) -> dict:
        return {"message": {"data": base64.b64encode(data).decode(), "messageId": mid, "attributes": {}},
                "subscription": "projects/p/subscriptions/s"}

    try:
        kind = "google.cloud.pubsub.topic.v1.messagePublished"
        assert cloud_event(url, kind, message(b"not json", "m1")) == 200  # poison: logged, acknowledged
        assert cloud_event(url, kind, message(json.dumps({"n": 5}).encode(), "m2")) == 500  # the tee is down
        assert cloud_event(url, kind, message(json.dumps({"n": 5}).encode(), "m2")) == 500  # redelivered
        log = server.log()
    finally:
        server.stop()
    import redis

    # the state change of m2 happened once, though both deliveries failed later at the tee
    assert float(redis.Redis.from_url(redis_kv_url).hget(f"agg/{PARTITION}/P/Sum/n:AggSum", "value")) == 5
    assert "acknowledged with nowhere to go" in log
    entries = [json.loads(line) for line in log.splitlines() if line.startswith('{"severity"')]
    failed = [e for e in entries if e["message"].startswith("record failed")]
    assert {e["logging.googleapis.com/labels"]["record_id"] for e in failed} == {"m1", "m2"}
    assert all(e["severity"] == "ERROR" for e in failed)
    assert any(e["agglo"]["transient"] and e["agglo"]["process"] == "Out" for e in failed)


def test_the_config_can_come_from_gcs(storage, gcs_emulator, monkeypatch):
    from handlers import gcp_functions
    from handlers.connectors import gcs

    client, names = storage
    cfg = config({"continuation": {"name": "OnlyA", "condition": {"exists": {"ops": [{"key": "a", "op": "Exists"}]}}}})
    client.bucket(names["input"]).blob("conf/p.json").upload_from_string(json.dumps(cfg))
    monkeypatch.setenv("AGGLO_CONFIG", f"gs://{names['input']}/conf/p.json")
    gcs.storage_client.cache_clear()
    gcp_functions.reset()
    try:
        app = gcp_functions.app()
        outcomes = app.run([TriggerRecord("1", {"a": 1}), TriggerRecord("2", {"b": 1})], "test")
        assert [bool(o.outputs) for o in outcomes] == [True, False]
    finally:
        gcp_functions.reset()
        gcs.storage_client.cache_clear()
