"""Shared test set-up. This directory is on sys.path, so tests import ``fakes`` and ``builders``."""

from __future__ import annotations

import os
import pathlib
import sys
import urllib.request

import pytest
from servers import Server, free_port

FIXTURES = pathlib.Path(__file__).parent / "fixtures"
BINGE_CONFIGS = FIXTURES / "binge" / "configs"


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
    server = Server([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
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
