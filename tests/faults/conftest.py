"""Backends for the fault-injection suite, and the tally it prints at the end of the run."""

from __future__ import annotations

import os
import pathlib
import uuid
from collections.abc import Iterator

import pytest
from _faults import (
    Backend,
    dump_dynamo,
    dump_firestore,
    dump_memory,
    dump_redis,
    dump_sqlite,
    summary_lines,
)
from _world import TickerEndpoint, World, write_executables

ENV_TALLY_FILE = "AGGLO_FAULTS_TALLY"
ENV_NIGHTLY = "AGGLO_FAULTS_NIGHTLY"


def pytest_collection_modifyitems(config, items) -> None:
    """The nightly size runs with ``AGGLO_FAULTS_NIGHTLY=1`` (``make test-faults``) or when ``-m`` asks for it."""
    if os.environ.get(ENV_NIGHTLY) == "1" or "faults_nightly" in (config.getoption("markexpr") or ""):
        return
    nightly = [item for item in items if item.get_closest_marker("faults_nightly")]
    if nightly:
        config.hook.pytest_deselected(items=nightly)
        items[:] = [item for item in items if not item.get_closest_marker("faults_nightly")]


@pytest.fixture(autouse=True)
def _quiet_lambda(monkeypatch):
    monkeypatch.setenv("POWERTOOLS_METRICS_DISABLED", "true")
    monkeypatch.setenv("POWERTOOLS_LOG_LEVEL", "CRITICAL")


@pytest.fixture
def memory_backend() -> Backend:
    from handlers.connectors import default_registry

    return Backend("memory", default_registry, lambda tmp: "mem:state", dump_memory)


@pytest.fixture
def sqlite_backend() -> Backend:
    from handlers.connectors import default_registry

    return Backend("sqlite", default_registry, lambda tmp: f"sqlite:{tmp}/state.db", dump_sqlite)


@pytest.fixture
def redis_backend(redis_url) -> Backend:
    import redis

    from handlers.connectors import default_registry

    client = redis.Redis.from_url(redis_url)

    def fresh(tmp) -> str:
        client.flushall()
        return redis_url

    return Backend("redis", default_registry, fresh, dump_redis)


@pytest.fixture
def dynamo_backend(aws) -> Backend:
    from handlers.connectors import default_registry
    from handlers.connectors.aws import client

    def fresh(tmp) -> str:
        table = f"state-{uuid.uuid4().hex[:8]}"
        client("dynamodb").create_table(
            TableName=table, KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}], BillingMode="PAY_PER_REQUEST")
        return f"dynamo:tableName={table}"

    return Backend("dynamodb", default_registry, fresh, dump_dynamo)


@pytest.fixture
def firestore_backend(firestore_emulator, monkeypatch) -> Backend:
    from handlers.connectors import default_registry

    monkeypatch.setenv("FIRESTORE_EMULATOR_HOST", firestore_emulator)
    return Backend("firestore", default_registry,
                   lambda tmp: f"firestore:project=agglo-faults,collection=s-{uuid.uuid4().hex[:8]}", dump_firestore)


@pytest.fixture(scope="session")
def world(tmp_path_factory) -> Iterator[World]:
    """The executables and the ticker of the extended config (``_world``), shared by its scenarios."""
    from entwine_world import rsa_pem

    ticker = TickerEndpoint()
    try:
        yield World(write_executables(tmp_path_factory.mktemp("executables")), ticker, rsa_pem())
    finally:
        ticker.close()


def pytest_terminal_summary(terminalreporter, exitstatus, config) -> None:
    """The tally on the terminal, and in the file ``$AGGLO_FAULTS_TALLY`` names (``make test-faults``)."""
    lines = summary_lines()
    if lines:
        terminalreporter.section("fault injection")
        for line in lines:
            terminalreporter.write_line(line)
        if os.environ.get(ENV_TALLY_FILE):
            pathlib.Path(os.environ[ENV_TALLY_FILE]).write_text("\n".join(lines) + "\n")
