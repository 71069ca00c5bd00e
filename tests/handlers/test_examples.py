"""The example configs in pipelines/ are valid, and every external they name has a connector."""

from __future__ import annotations

import pathlib

import pytest
from entwine_world import ed25519_pem

from agglo_core import compile_plan, load_config
from handlers.connectors import default_registry

PIPELINES = sorted((pathlib.Path(__file__).resolve().parents[2] / "pipelines").glob("*.json"))


@pytest.mark.parametrize("path", PIPELINES, ids=[p.name for p in PIPELINES])
def test_example_pipelines_compile_and_find_their_connectors(path, monkeypatch, tmp_path):
    for name in ("AGGLO_STATE_TABLE", "AGGLO_OUTPUT_BUCKET", "AGGLO_OUTPUT_QUEUE_URL", "AGGLO_REDIS_HOST",
                 "AGGLO_OUTPUT_TOPIC", "AGGLO_DEAD_LETTER_TOPIC"):
        monkeypatch.setenv(name, {"AGGLO_OUTPUT_QUEUE_URL": "https://sqs.example/q", "AGGLO_REDIS_HOST": "127.0.0.1",
                                  "AGGLO_OUTPUT_TOPIC": "projects/p/topics/t",
                                  "AGGLO_DEAD_LETTER_TOPIC": "projects/p/topics/d"}.get(name, "x"))
    monkeypatch.setenv("AWS_REGION", "us-east-1")  # an AWS connector without a region is refused when built
    monkeypatch.chdir(tmp_path)  # relative state and output paths land here
    config = load_config(path.read_text())
    keys = {d.entwine.pemPath: ed25519_pem() for d in config.processDefinitions if d.entwine is not None}
    plan = compile_plan(config, keys)
    registry = default_registry() if path.name.startswith("gcp") else default_registry()
    connectors = registry.build_all(plan.config)
    assert set(connectors) == {e.name for e in plan.config.externalSystems}
