"""The GCP example config on this machine: ``agglo run`` against Google's Pub/Sub, storage and Firestore
emulators, running the README's command ("The same config against the cloud") as written. Its state is in
Redis (the config as shipped) or in Firestore (the same config with another state store)."""

from __future__ import annotations

import contextlib
import json
import pathlib
import random
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from types import SimpleNamespace

import pytest
from cloud_examples import HEADING, SUM_KEY, check_run, copy_examples
from readme_commands import agglo_commands, block_running, exported
from servers import Server

from agglo_core.ir import ExternalIR
from handlers.connectors import Connector, default_registry

PROJECT = "agglo-local"
REDIS_PORT = 6379  # pipelines/gcp.json names it
AGGLO = str(pathlib.Path(sys.executable).parent / "agglo")  # the installed command, as in the README


def agglo(args: list[str], cwd: pathlib.Path) -> subprocess.CompletedProcess:
    return subprocess.run([AGGLO, *args], cwd=cwd, capture_output=True, stdin=subprocess.DEVNULL, timeout=120,
                          check=False)


def json_lines(path: pathlib.Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().split("\n") if line.strip()]


@pytest.fixture(scope="module")
def redis_host() -> Iterator[str]:
    """A redis-server at port 6379, as the config wants, on a loopback address of its own (127.x.y.z are all
    this machine's), so that no other server on 6379 is in the way."""
    rng = random.Random()
    for _ in range(20):
        host = f"127.{rng.randrange(1, 255)}.{rng.randrange(1, 255)}.{rng.randrange(2, 255)}"
        try:
            port_open_on(host)
        except OSError:
            break  # nothing listens there
    else:
        raise RuntimeError("no free loopback address for redis-server")
    binary = shutil.which("redis-server")
    assert binary, "redis-server is not installed: apt-get install -y redis-server (make test does this)"
    server = Server([binary, "--bind", host, "--port", str(REDIS_PORT), "--save", "", "--appendonly", "no"],
                    ready=lambda: port_open_on(host))
    yield host
    server.stop()


def port_open_on(host: str) -> bool:
    import socket

    with socket.create_connection((host, REDIS_PORT), timeout=1):
        return True


@pytest.fixture
def gcp(pubsub_emulator, gcs_emulator, firestore_emulator, redis_host, monkeypatch, tmp_path):
    """The emulators in the SDKs' environment, the README's topics and bucket (emptied), a subscription of
    this test's own to the output topic, and a directory holding the example pipelines and events."""
    from google.api_core.exceptions import AlreadyExists
    from google.cloud import pubsub_v1, storage

    env = exported(block_running(HEADING, "agglo run -c pipelines/gcp.json"))
    sdk_env = {"PUBSUB_EMULATOR_HOST": pubsub_emulator, "STORAGE_EMULATOR_HOST": gcs_emulator,
               "FIRESTORE_EMULATOR_HOST": firestore_emulator, "GOOGLE_CLOUD_PROJECT": PROJECT,
               "AGGLO_REDIS_HOST": redis_host}
    for key, value in {**env, **sdk_env}.items():
        monkeypatch.setenv(key, value)
    publisher, subscriber = pubsub_v1.PublisherClient(), pubsub_v1.SubscriberClient()
    for topic in (env["AGGLO_OUTPUT_TOPIC"], env["AGGLO_DEAD_LETTER_TOPIC"]):
        with contextlib.suppress(AlreadyExists):
            publisher.create_topic(name=topic)
    subscription = f"projects/{PROJECT}/subscriptions/out-{uuid.uuid4().hex[:8]}"
    subscriber.create_subscription(name=subscription, topic=env["AGGLO_OUTPUT_TOPIC"])
    bucket = storage.Client().bucket(env["AGGLO_OUTPUT_BUCKET"])
    if bucket.exists():
        for blob in list(bucket.list_blobs()):
            blob.delete()
    else:
        bucket.create()
    copy_examples(tmp_path)
    yield SimpleNamespace(dir=tmp_path, bucket=bucket, subscriber=subscriber, subscription=subscription)
    subscriber.delete_subscription(subscription=subscription)


def with_firestore_state(directory: pathlib.Path) -> str:
    """The GCP config with its state in Firestore (a collection of this test's own): the config's name."""
    config = json.loads((directory / "pipelines" / "gcp.json").read_text())
    [state] = [e for e in config["externalSystems"] if e["name"] == "AggregatorStateKVStore"]
    state["connectionString"] = f"firestore:collection=agglo-state-{uuid.uuid4().hex[:8]}"
    (directory / "pipelines" / "gcp-firestore.json").write_text(json.dumps(config))
    return "pipelines/gcp-firestore.json"


def state_store(directory: pathlib.Path, config: str) -> Connector:
    """The config's state store, as agglo builds it (its ``${VAR}``s from this environment)."""
    [state] = [e for e in json.loads((directory / config).read_text())["externalSystems"]
               if e["name"] == "AggregatorStateKVStore"]
    return default_registry().build(ExternalIR(state["name"], state["externalType"], state["connectionString"]))


def published(gcp: SimpleNamespace, expected: int, timeout_s: float = 30) -> list[dict]:
    """The messages on the test's subscription (acknowledged), once ``expected`` arrived, and any more."""
    seen: list = []
    deadline = time.monotonic() + timeout_s
    waiting = True
    while waiting and time.monotonic() < deadline:
        waiting = len(seen) < expected  # then one last look, not waiting, for messages beyond those expected
        answer = gcp.subscriber.pull(subscription=gcp.subscription, max_messages=100, timeout=5,
                                     return_immediately=not waiting)
        if answer.received_messages:
            seen.extend(answer.received_messages)
            gcp.subscriber.acknowledge(subscription=gcp.subscription,
                                       ack_ids=[m.ack_id for m in answer.received_messages])
            waiting = True
    return [{"id": m.message.attributes["agglo-id"], "body": json.loads(m.message.data)} for m in seen]


def objects(gcp: SimpleNamespace) -> dict[str, dict]:
    return {b.name: json.loads(b.download_as_bytes()) for b in gcp.bucket.list_blobs(prefix="before/")}


@pytest.mark.filterwarnings("ignore:The return_immediately flag is deprecated")  # the emulator honours it
@pytest.mark.parametrize("store", ["redis", "firestore"])
def test_agglo_run_runs_the_gcp_config_against_the_emulators(gcp, store):
    [run] = agglo_commands(block_running(HEADING, "agglo run -c pipelines/gcp.json"))
    if store == "firestore":
        run[run.index("pipelines/gcp.json")] = with_firestore_state(gcp.dir)
    config = run[run.index("-c") + 1]
    proc = agglo(run, gcp.dir)
    assert proc.returncode == 0, proc.stderr.decode()
    events = json_lines(gcp.dir / "events" / "basic.jsonl")
    outputs = json_lines(gcp.dir / "outputs.jsonl")
    tees = [o["internal:tee:output"] for o in outputs]
    total = check_run(events, outputs, objects(gcp), published(gcp, len(events)))
    state = state_store(gcp.dir, config)
    assert state.get(SUM_KEY) == {"value": total}  # type: ignore[attr-defined]

    # Again, with --dedupe: the same outputs, state changed once, the same objects, the same ids published.
    first = (gcp.dir / "outputs.jsonl").read_bytes()
    first_objects = objects(gcp)
    again = agglo(run, gcp.dir)
    assert again.returncode == 0, again.stderr.decode()
    assert (gcp.dir / "outputs.jsonl").read_bytes() == first
    assert state.get(SUM_KEY) == {"value": total}  # type: ignore[attr-defined]
    assert objects(gcp) == first_objects
    assert sorted(m["id"] for m in published(gcp, len(events))) == sorted(tee[1]["uuid"] for tee in tees)


def test_a_missing_bucket_or_topic_is_the_operators_to_fix_so_records_are_kept(gcp):
    """As a missing DynamoDB table or S3 bucket: a transient failure (retried, redelivered, queued again), not
    the record's own (dead-lettered), whichever platform runs the config."""
    from agglo_core.effects import EffectFailed, Put
    from handlers.connectors import gcs, pubsub

    gcs.storage_client.cache_clear()  # clients of this test's emulators
    pubsub.publisher.cache_clear()
    registry = default_registry()
    for kind, connection_string in (("ExternalObjectStore", "gcs:bucketName=no-such-bucket,prefix=before/"),
                                    ("ExternalPubSub", f"pubsub:projects/{PROJECT}/topics/no-such-topic")):
        [failed] = registry.build(ExternalIR("Out", kind, connection_string)).perform([Put("Out", "k", {"n": 1})])
        assert isinstance(failed, EffectFailed) and "404" in failed.message and failed.transient, failed
