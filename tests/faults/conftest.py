"""Backends for the fault-injection suite, and the tally it prints at the end of the run."""

from __future__ import annotations

import uuid

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


@pytest.fixture(autouse=True)
def _quiet_lambda(monkeypatch):
    monkeypatch.setenv("POWERTOOLS_METRICS_DISABLED", "true")
    monkeypatch.setenv("POWERTOOLS_LOG_LEVEL", "CRITICAL")


@pytest.fixture
def memory_backend() -> Backend:
    from handlers.connectors import local_registry

    return Backend("memory", local_registry, lambda tmp: "mem:state", dump_memory)


@pytest.fixture
def sqlite_backend() -> Backend:
    from handlers.connectors import local_registry

    return Backend("sqlite", local_registry, lambda tmp: f"sqlite:{tmp}/state.db", dump_sqlite)


@pytest.fixture
def redis_backend(redis_url) -> Backend:
    import redis

    from handlers.connectors import local_registry

    client = redis.Redis.from_url(redis_url)

    def fresh(tmp) -> str:
        client.flushall()
        return redis_url

    return Backend("redis", local_registry, fresh, dump_redis)


@pytest.fixture
def dynamo_backend(aws) -> Backend:
    from handlers.aws_lambda import aws_registry
    from handlers.connectors.aws import client

    def fresh(tmp) -> str:
        table = f"state-{uuid.uuid4().hex[:8]}"
        client("dynamodb").create_table(
            TableName=table, KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}], BillingMode="PAY_PER_REQUEST")
        return f"dynamo:tableName={table}"

    return Backend("dynamodb", aws_registry, fresh, dump_dynamo)


@pytest.fixture
def firestore_backend(firestore_emulator, monkeypatch) -> Backend:
    from handlers.gcp_functions import gcp_registry

    monkeypatch.setenv("FIRESTORE_EMULATOR_HOST", firestore_emulator)
    return Backend("firestore", gcp_registry,
                   lambda tmp: f"firestore:project=agglo-faults,collection=s-{uuid.uuid4().hex[:8]}", dump_firestore)


def pytest_terminal_summary(terminalreporter, exitstatus, config) -> None:
    lines = summary_lines()
    if lines:
        terminalreporter.section("fault injection")
        for line in lines:
            terminalreporter.write_line(line)
