"""Shared test set-up. This directory is on sys.path, so tests import ``fakes`` and ``builders``."""

from __future__ import annotations

import os
import pathlib
import sys
import urllib.request

import pytest
from servers import Server, free_port, google_emulator, port_open

FIXTURES = pathlib.Path(__file__).parent / "fixtures"
BINGE_CONFIGS = FIXTURES / "binge" / "configs"


@pytest.fixture(autouse=True, scope="session")
def _own_plan_cache(tmp_path_factory):
    """Runs of agglo (and its subprocesses) cache validated plans in the session's own directory, not the
    user's: tests neither leave entries behind nor start from ones another run wrote."""
    os.environ["AGGLO_CACHE_DIR"] = str(tmp_path_factory.mktemp("agglo-cache"))
    yield


@pytest.fixture(autouse=True)
def _fresh_memory_stores():
    """``mem:`` stores live per process; start every test without them."""
    from handlers.connectors import memory

    memory.reset()
    yield
    memory.reset()


AWS_ENV = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1",
           "AWS_REGION": "us-east-1", "POWERTOOLS_METRICS_NAMESPACE": "agglo-tests"}


@pytest.fixture(scope="session")
def moto_endpoint():
    port = free_port()
    # One request at a time: moto's transactions are not isolated from requests served in parallel.
    server = Server([sys.executable, str(pathlib.Path(__file__).parent / "moto_server.py"), "-H", "127.0.0.1",
                     "-p", str(port)],
                    f"http://127.0.0.1:{port}/moto-api/", env={**os.environ, **AWS_ENV})
    yield f"http://127.0.0.1:{port}"
    server.stop()


@pytest.fixture
def aws(moto_endpoint, monkeypatch):
    """Fresh AWS (moto) state and fresh cold-start state; boto3 clients point at moto."""
    from handlers import aws_lambda
    from handlers.connectors import aws as aws_clients

    urllib.request.urlopen(urllib.request.Request(f"{moto_endpoint}/moto-api/reset", method="POST"), timeout=10)
    for key, value in {**AWS_ENV, "AWS_ENDPOINT_URL": moto_endpoint}.items():
        monkeypatch.setenv(key, value)
    aws_clients.client.cache_clear()
    aws_clients._session.cache_clear()
    aws_lambda.reset()
    yield moto_endpoint
    aws_lambda.reset()
    aws_clients.client.cache_clear()


@pytest.fixture(scope="session")
def redis_url():
    """A real redis-server on a free port (``apt-get install redis-server``; make test installs it)."""
    import shutil

    binary = shutil.which("redis-server")
    assert binary, "redis-server is not installed: apt-get install -y redis-server (make test does this)"
    port = free_port()
    server = Server([binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
                    ready=lambda: port_open(port))
    yield f"redis://127.0.0.1:{port}/0"
    server.stop()


@pytest.fixture
def redis_kv_url(redis_url):
    """The Redis server, emptied."""
    import redis

    redis.Redis.from_url(redis_url).flushall()
    return redis_url


FIRESTORE_EMULATOR = "/usr/lib/google-cloud-sdk/platform/cloud-firestore-emulator/cloud_firestore_emulator"


@pytest.fixture(scope="session")
def firestore_emulator():
    """``host:port`` of Google's Firestore emulator (from the machine image)."""
    with google_emulator(FIRESTORE_EMULATOR, "Firestore",
                         lambda port: ["start", "--host=127.0.0.1", f"--port={port}"]) as address:
        yield address


PUBSUB_EMULATOR = "/usr/lib/google-cloud-sdk/platform/pubsub-emulator/bin/cloud-pubsub-emulator"


@pytest.fixture(scope="session")
def pubsub_emulator():
    """``host:port`` of a running Pub/Sub emulator (from the machine image): the Cloud Functions tests' and
    those of other adapters teeing to Pub/Sub."""
    with google_emulator(PUBSUB_EMULATOR, "Pub/Sub", lambda port: ["--host=127.0.0.1", f"--port={port}"]) as address:
        yield address
