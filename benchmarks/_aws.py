"""What the AWS workloads share: a moto server on 127.0.0.1, its state table, binge's basic pipeline on it."""

from __future__ import annotations

import json
import os
import pathlib
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

ROOT = pathlib.Path(__file__).resolve().parent.parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_for(url: str, timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            urllib.request.urlopen(url, timeout=2).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


@contextmanager
def moto_server() -> Iterator[dict[str, str]]:
    """Runs a moto server; yields the environment for boto3 (also set in ``os.environ`` meanwhile)."""
    host, port = "127.0.0.1", _free_port()
    server = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", host, "-p", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    env = {"AWS_ENDPOINT_URL": f"http://{host}:{port}", "AWS_ACCESS_KEY_ID": "bench",
           "AWS_SECRET_ACCESS_KEY": "bench", "AWS_DEFAULT_REGION": "us-east-1"}
    saved = dict(os.environ)
    try:
        _wait_for(f"http://{host}:{port}/moto-api/")
        os.environ.update(env)
        yield env
    finally:
        os.environ.clear()
        os.environ.update(saved)
        server.kill()
        server.wait(10)


def create_state_table(dynamodb: Any, name: str = "state") -> None:
    """The table the DynamoDB connector keeps state in (string partition key ``pk``)."""
    dynamodb.create_table(TableName=name, KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
                          AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
                          BillingMode="PAY_PER_REQUEST")


def basic_config(tmp: pathlib.Path, state: str) -> pathlib.Path:
    """pipelines/basic.json with its state at ``state`` and its tee files under ``tmp`` (Lambda's /tmp)."""
    cfg = json.loads((ROOT / "pipelines/basic.json").read_text())
    for ext in cfg["externalSystems"]:
        if ext["externalType"] == "ExternalKVStore":
            ext["connectionString"] = state
        elif ext["externalType"] == "ExternalLocalFile":
            ext["connectionString"] = str(tmp / pathlib.Path(ext["connectionString"]).name)
    path = tmp / f"basic-{state.split(':')[0]}.json"
    path.write_text(json.dumps(cfg))
    return path
