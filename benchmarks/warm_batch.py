"""Workload 5: a warm Lambda handling a 1,000-record Kinesis batch (DynamoDB state on moto), against agglo run.

Both run binge's basic pipeline over the same 1,000 events in this process,
after a first untimed batch has warmed them up: the Lambda handler with its
state in DynamoDB (deduplicated, as always on Lambda) and its tee files under
a temporary directory; ``agglo run``'s loop with SQLite state, with and without
``--dedupe``. Each timed batch has fresh record ids, so every one does real work.
"""

from __future__ import annotations

import base64
import io
import os
import pathlib
import tempfile
import time
from collections.abc import Callable

from agglo_core import compile_plan
from benchmarks._aws import basic_config, create_state_table, moto_server
from benchmarks.core_throughput import lines

RECORDS = 1000


def _kinesis_event(data: list[bytes], batch: int) -> dict:
    return {"Records": [{
        "kinesis": {"partitionKey": f"p{i % 8}", "kinesisSchemaVersion": "1.0",
                    "data": base64.b64encode(line).decode(), "approximateArrivalTimestamp": 1795780000.0,
                    "sequenceNumber": f"{batch:020d}{i:020d}"},
        "eventSource": "aws:kinesis", "eventID": f"shardId-000000000000:{batch:020d}{i:020d}",
        "eventVersion": "1.0", "eventName": "aws:kinesis:record", "awsRegion": "us-east-1",
        "eventSourceARN": "arn:aws:kinesis:us-east-1:123456789012:stream/in"} for i, line in enumerate(data)]}


def _median_rates(batch: Callable[[int], None], runs: int, records: int) -> dict[str, float]:
    """Median records/s by the wall clock and by this process's CPU time (which leaves moto's server out)."""
    batch(-1)  # warm: clients, connections, tables, caches
    wall, cpu = [], []
    for i in range(runs):
        started, started_cpu = time.perf_counter(), time.process_time()
        batch(i)
        wall.append(records / (time.perf_counter() - started))
        cpu.append(records / (time.process_time() - started_cpu))
    return {"wall": sorted(wall)[runs // 2], "cpu": sorted(cpu)[runs // 2]}


def measure(runs: int, records: int = RECORDS) -> dict[str, dict[str, float]]:
    """Median records/s of each way of running the batch, by wall clock and by CPU time."""
    import boto3

    from handlers import aws_lambda
    from handlers.connectors import aws as aws_clients
    from handlers.connectors import default_registry
    from handlers.local import run as agglo_run
    from handlers.runtime.driver import Runtime

    data = lines(records)
    results: dict[str, dict[str, float]] = {}
    with moto_server(), tempfile.TemporaryDirectory() as tmp_name:
        tmp = pathlib.Path(tmp_name)
        aws_clients.client.cache_clear()
        create_state_table(boto3.client("dynamodb"))
        os.environ.update(AGGLO_CONFIG=str(basic_config(tmp, "dynamo:tableName=state")),
                          POWERTOOLS_LOG_LEVEL="ERROR", POWERTOOLS_METRICS_DISABLED="true")
        aws_lambda.reset()
        try:
            def lambda_batch(i: int) -> None:
                answer = aws_lambda.handler(_kinesis_event(data, i + 1), None)
                assert answer == {"batchItemFailures": []}, answer

            results["Lambda handler, Kinesis, DynamoDB (moto)"] = _median_rates(lambda_batch, runs, records)
        finally:
            aws_lambda.reset()
            aws_clients.client.cache_clear()

        plan = compile_plan(basic_config(tmp, f"sqlite:{tmp}/state.db").read_bytes())
        payload = b"\n".join(data) + b"\n"
        for label, dedupe in (("agglo run, SQLite", False), ("agglo run --dedupe, SQLite", True)):
            runtime = Runtime.build(plan, default_registry(), dedupe=dedupe)

            def run_batch(i: int, runtime: Runtime = runtime, label: str = label) -> None:
                out, err = io.BytesIO(), io.StringIO()
                assert agglo_run(runtime, io.BytesIO(payload), f"{label}-{i}", out, err) == 0, err.getvalue()

            results[label] = _median_rates(run_batch, runs, records)
    return results
