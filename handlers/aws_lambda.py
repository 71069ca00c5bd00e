"""AWS Lambda entry point: ``handlers.aws_lambda.handler``.

One handler for every trigger (see ``handlers.sources.aws``). In the init phase
(when Lambda imports this module, which SnapStart snapshots and provisioned
concurrency runs ahead of traffic) it reads ``AGGLO_CONFIG``, builds the plan
(from the config's compiled artefact, without pydantic, when the package holds one
for exactly that config: ``handlers.runtime.artefact``) and the connectors once; a config that cannot start fails the init with
``InitError`` saying why. Without ``AGGLO_CONFIG`` at import nothing is built
until the first invocation. boto3 clients are created on first use, or in the
init phase under SnapStart and provisioned concurrency (``prepare``);
``after_restore`` renews what must differ between the sandboxes restored from
one SnapStart snapshot.

Each record is settled by ``handlers.runtime.settlement`` (the README's "Failure
settlement" table); this module only says it in Lambda's words:

* SQS, Kinesis, DynamoDB Streams: the batch runs at once; records settled
  ``retry`` or ``report`` are returned in ``batchItemFailures`` (Powertools' batch
  utilities), the others are acknowledged. SQS FIFO queues run in order and, after
  a failure, fail the rest of that message group without running it.
* S3 and SNS (asynchronous invocations): the invocation fails after every record
  ran when any record is settled ``retry`` or ``report``, so Lambda's retries and
  on-failure destination keep the event.
* API Gateway / function URLs: the outputs in the response; 400 for a body that
  is not a JSON object, 422 for a record whose data is at fault, 503 with
  ``Retry-After`` for one an outside system failed.
* Direct invocation (an event or a list of events): ``{"outputs": [...], "errors": [...]}``.

``AGGLO_DEAD_LETTER`` names the dead-letter external system; ``AGGLO_STREAM_ON_FAILURE``
(``true``) says the Kinesis and DynamoDB Streams mappings have an on-failure
destination and bounded retries.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from typing import Any

from agglo_core import Outcome
from agglo_core.ir import PlanIR
from handlers.connectors import default_registry
from handlers.runtime.boot import build_at_init
from handlers.runtime.driver import Runtime
from handlers.runtime.settlement import (
    FAILED,
    RETRY_AFTER_S,
    RetryBudget,
    SettlementPolicy,
    Trigger,
    Verdict,
)
from handlers.sources import aws as sources
from handlers.sources import posted

S3_CHUNK = 500


class RecordsFailed(RuntimeError):
    """Raised at the end of an asynchronous invocation with records to deliver again or to report."""


class _RecordFailed(Exception):
    """Tells Powertools' batch processor that one record failed."""


class Instruments:
    """Powertools logs and EMF metrics, X-Ray subsegments per traced process."""

    def __init__(self, ir: PlanIR) -> None:
        from aws_lambda_powertools import Logger

        self.service = os.environ.get("POWERTOOLS_SERVICE_NAME", "agglo")
        self.namespace = os.environ.get("POWERTOOLS_METRICS_NAMESPACE", "agglo")
        self.logger = Logger(service=self.service)
        self.instrumented = {(p.name, proc.name): proc.instrumentation for p in ir.pipelines for proc in p.processes}
        self.traced = {(p.name, proc.name) for p in ir.pipelines for proc in p.processes
                       if p.tracing or proc.instrumentation.tracing}
        self._started: dict[tuple[str, str], float] = {}
        self.active = bool(self.traced) or any(i.counter or i.latency for i in self.instrumented.values())
        self._process_metrics: list[tuple[str, str, str, float, str]] = []

    def observe(self, pipeline: str, process: str, n_in: int, n_out: int) -> None:
        """The core's stage observer: per-process counters, latency and traces."""
        key = (pipeline, process)
        if n_out < 0:
            self._started[key] = time.time()
            return
        started = self._started.pop(key, time.time())
        ended = time.time()
        inst = self.instrumented.get(key)
        if inst is not None and inst.counter:
            self._process_metrics.append((pipeline, process, "RecordsIn", n_in, "Count"))
            self._process_metrics.append((pipeline, process, "RecordsFailedOrStopped", n_in - n_out, "Count"))
        if inst is not None and inst.latency:
            self._process_metrics.append((pipeline, process, "Latency", (ended - started) * 1000, "Milliseconds"))
        if key in self.traced:
            _trace(f"{pipeline}/{process}", started, ended, {"records": n_in, "passed": n_out})

    def report(self, trigger: str, outcomes: Sequence[Outcome]) -> None:
        """Log every failed record (its id as correlation id) and flush the invocation's metrics."""
        from aws_lambda_powertools.metrics import MetricUnit, single_metric

        processed: dict[str, int] = {}
        failed: dict[str, int] = {}
        for o in outcomes:
            for pipeline, _ in o.outputs:
                processed[pipeline] = processed.get(pipeline, 0) + 1
            for e in o.errors:
                failed[e.pipeline or "(input)"] = failed.get(e.pipeline or "(input)", 0) + 1
                self.logger.set_correlation_id(o.record.id)
                self.logger.error("record failed", extra={"record_id": o.record.id, "pipeline": e.pipeline,
                                                          "agglo_process": e.process, "error": e.message})
        self.logger.set_correlation_id(None)
        self.logger.info("invocation done", extra={"trigger": trigger, "records": len(outcomes),
                                                   "failed": sum(1 for o in outcomes if o.errors)})
        metrics: list[tuple[str, str | None, str, float, str]] = [
            (p, None, "RecordsProcessed", n, "Count") for p, n in processed.items()]
        metrics += [(p, None, "RecordsFailed", n, "Count") for p, n in failed.items()]
        metrics += self._process_metrics
        self._process_metrics = []
        for pipeline, process, name, value, unit in metrics:
            with single_metric(name=name, unit=getattr(MetricUnit, unit), value=value, namespace=self.namespace,
                               default_dimensions={"service": self.service}) as metric:
                metric.add_dimension(name="pipeline", value=pipeline)
                if process is not None:
                    metric.add_dimension(name="process", value=process)


def _trace(name: str, started: float, ended: float, metadata: dict) -> None:
    from aws_xray_sdk.core import xray_recorder

    subsegment = xray_recorder.begin_subsegment(name)
    if subsegment is None:  # tracing not active in this invocation
        return
    subsegment.start_time = started
    for key, value in metadata.items():
        subsegment.put_metadata(key, value, "agglo")
    xray_recorder.end_subsegment(ended)


class LambdaApp:
    """Everything a Lambda container builds once: the runtime, the instruments, the settlement policies."""

    def __init__(self, runtime: Runtime, dead_letter: str | None = None, stream_failure_destination: bool = False
                 ) -> None:
        self.runtime = runtime
        self.dead_letter = dead_letter
        self.stream_failure_destination = stream_failure_destination
        self.instruments = Instruments(runtime.plan.ir)
        # Observing stage boundaries has a cost (the core then runs pure stages one at a time): only when asked.
        runtime.observe = self.instruments.observe if self.instruments.active else None
        self.keys = posted.KeyMemory()  # this container's recent Idempotency-Keys (the README says what it covers)

    @classmethod
    def from_environment(cls) -> LambdaApp:
        from handlers.runtime.boot import serverless_plan
        from handlers.runtime.config_source import read_config_source
        from handlers.runtime.execs import ExecRunner, allow_list_from

        plan = serverless_plan(read_config_source())
        runtime = Runtime.build(plan, default_registry(), ExecRunner(allow_list_from(None)))
        return cls(runtime, runtime.dead_letter_target(os.environ.get("AGGLO_DEAD_LETTER")),
                   os.environ.get("AGGLO_STREAM_ON_FAILURE", "").lower() in ("1", "true", "yes"))

    def policy(self, trigger: str) -> SettlementPolicy:
        return SettlementPolicy(Trigger(trigger), self.dead_letter, self.stream_failure_destination)

    def run(self, items: list[sources.TriggerRecord], trigger: str, budget: RetryBudget | None = None
            ) -> list[Outcome]:
        outcomes = self.runtime.process([i.record(trigger) for i in items], budget)
        self.instruments.report(trigger, outcomes)
        return outcomes

    def settled(self, items: list[sources.TriggerRecord], trigger: str, budget: RetryBudget | None = None
                ) -> list[tuple[Outcome, Verdict]]:
        """Run ``items`` and settle each."""
        outcomes = self.run(items, trigger, budget)
        return list(zip(outcomes, self.runtime.settle(outcomes, self.policy(trigger)), strict=True))

    def __call__(self, event: Any, context: Any) -> Any:
        trigger = sources.detect(event)
        if trigger in (sources.SQS, sources.KINESIS, sources.DYNAMODB):
            return self._batch(trigger, event, context)
        if trigger in (sources.S3, sources.SNS):
            return self._asynchronous(trigger, event)
        if trigger == sources.HTTP:
            return self._http(event)
        request_id = getattr(context, "aws_request_id", None) or "local"
        outcomes = self.run(sources.direct_items(event, request_id), trigger)
        return {"outputs": [e for o in outcomes for _, e in o.outputs],
                "errors": [e.to_dict() for o in outcomes for e in o.errors]}

    def _batch(self, trigger: str, event: dict, context: Any) -> dict:
        """Records settled ``retry`` or ``report`` go back in ``batchItemFailures``; the rest are acknowledged."""
        from aws_lambda_powertools.utilities.batch import (
            BatchProcessor,
            EventType,
            SqsFifoPartialProcessor,
            process_partial_response,
        )

        items = {sources.SQS: sources.sqs_items, sources.KINESIS: sources.kinesis_items,
                 sources.DYNAMODB: sources.dynamodb_items}[trigger](event)
        by_report_id = {i.report_as: i for i in items}
        fifo = trigger == sources.SQS and str(event["Records"][0].get("eventSourceARN", "")).endswith(".fifo")
        if fifo:
            # In order, one at a time: after a failure the processor skips the rest of that group unrun.
            processor: Any = SqsFifoPartialProcessor(skip_group_on_error=True)
            budget = self.runtime.retry_budget()  # the invocation's, not each record's

            def settlement_of(report_id: str) -> tuple[Outcome, Verdict]:
                [settled] = self.settled([by_report_id[report_id]], trigger, budget)
                return settled
        else:
            processor = BatchProcessor({sources.SQS: EventType.SQS, sources.KINESIS: EventType.KinesisDataStreams,
                                        sources.DYNAMODB: EventType.DynamoDBStreams}[trigger],
                                       raise_on_entire_batch_failure=False)
            settlements = {i.report_as: s for i, s in zip(items, self.settled(items, trigger), strict=True)}

            def settlement_of(report_id: str) -> tuple[Outcome, Verdict]:
                return settlements[report_id]

        def record_handler(record: Any) -> None:
            raw = record.raw_event
            report_id = str(raw.get("messageId") or (raw.get("kinesis") or {}).get("sequenceNumber")
                              or (raw.get("dynamodb") or {}).get("SequenceNumber"))
            outcome, verdict = settlement_of(report_id)
            if verdict in FAILED:
                raise _RecordFailed(f"{verdict}: " + "; ".join(str(e) for e in outcome.errors))

        return dict(process_partial_response(event=event, record_handler=record_handler, processor=processor,
                                             context=context))

    def _asynchronous(self, trigger: str, event: dict) -> dict:
        """The invocation fails if any record must be delivered again or reported: Lambda retries the event."""
        settled: list[tuple[Outcome, Verdict]] = []
        if trigger == sources.S3:
            budget = self.runtime.retry_budget()  # the invocation's, not each chunk's
            for chunk in _s3_chunks(event):
                settled.extend(self.settled(chunk, trigger, budget))
        else:
            settled = self.settled(sources.sns_items(event), trigger)
        unsettled = [o for o, v in settled if v in FAILED]
        if unsettled:
            raise RecordsFailed(f"{len(unsettled)} of {len(settled)} record(s) failed for a reason outside them, or "
                                f"with no dead-letter output to take them (AGGLO_DEAD_LETTER names one); first: "
                                f"{unsettled[0].errors[0]}")
        return {"records": len(settled), "failed": sum(1 for o, _ in settled if o.errors),
                "deadLettered": sum(1 for _, v in settled if v is Verdict.DEAD_LETTER)}

    def _http(self, event: dict) -> dict:
        """As the HTTP Cloud Function and ``agglo serve``: 400 for a bad body, 409 for a key reused with
        another body, one result per element of an array."""
        raw, key = sources.http_request(event)
        try:
            events, array = posted.accept(raw, key, self.keys)
        except posted.BadRequest as e:
            return _http_response(400, {"error": str(e)})
        except posted.KeyConflict as e:
            return _http_response(409, {"error": str(e)})
        outcomes = self.run([e.item for e in events], sources.HTTP)
        status, answer = posted.http_answer(outcomes, self.runtime.settle(outcomes, self.policy(sources.HTTP)),
                                            array)
        return _http_response(status, answer, {"Retry-After": str(RETRY_AFTER_S)} if status == 503 else None)


def _http_response(status: int, body: Any, headers: dict[str, str] | None = None) -> dict:
    import orjson

    return {"statusCode": status, "headers": {"Content-Type": "application/json", **(headers or {})},
            "body": orjson.dumps(body).decode()}


def _s3_chunks(event: dict) -> Any:
    """The records of every object in an S3 notification, in chunks, streamed."""
    from handlers.connectors.s3 import open_object
    from handlers.sources.jsonfile import Limits, read_records

    limits = Limits.from_environment()  # AGGLO_MAX_LINE_BYTES, AGGLO_MAX_DECOMPRESSED_BYTES
    chunk: list[sources.TriggerRecord] = []
    for bucket, key, version in sources.s3_objects(event):
        with open_object(bucket, key, version) as stream:
            # Damaged or oversized data is one failed record after the ones before it, not an exception.
            for n, payload, _, proof in read_records(stream, limits):
                chunk.append(sources.TriggerRecord(sources.s3_record_id(bucket, key, version, n), payload,
                                                   proof=proof))
                if len(chunk) >= S3_CHUNK:
                    yield chunk
                    chunk = []
    if chunk:
        yield chunk


def handler(event: Any, context: Any) -> Any:
    """The Lambda entry point."""
    return app()(event, context)


def app() -> LambdaApp:
    """This sandbox's app: the one built at import, or built now."""
    global _app
    if _app is None:
        _app = LambdaApp.from_environment()
    return _app


def reset() -> None:
    """Forget the cold-start state (tests; a new config or environment)."""
    global _app
    _app = None


# The AWS services whose clients a sandbox creates ahead of traffic, by the connector module that uses them.
# S3 is always among them: S3 notifications are read with it.
_SERVICES_OF_CONNECTORS = {"handlers.connectors.dynamo": "dynamodb", "handlers.connectors.s3": "s3",
                           "handlers.connectors.sqs": "sqs", "handlers.connectors.kinesis": "kinesis"}


def prepare() -> LambdaApp:
    """Everything an invocation would otherwise do first, done now: the app, the modules an invocation imports
    (Powertools' batch processing and metrics) and the AWS clients of the config's connectors (botocore's
    service models loaded). For the SnapStart snapshot and provisioned concurrency's init."""
    import aws_lambda_powertools.metrics  # noqa: F401
    import aws_lambda_powertools.utilities.batch  # noqa: F401
    import orjson  # noqa: F401

    from handlers.connectors.aws import client

    prepared = app()
    services = {"s3"} | {_SERVICES_OF_CONNECTORS[type(c).__module__] for c in prepared.runtime.connectors.values()
                         if type(c).__module__ in _SERVICES_OF_CONNECTORS}
    for service in sorted(services):
        client(service)
    return prepared


def after_restore() -> None:
    """A sandbox restored from a SnapStart snapshot shares the snapshot's memory with every other one:
    the random state (retry jitter draws from ``random``) is seeded anew, the AWS clients (their
    connections and credentials) are dropped to be created again on first use (botocore's loaded models
    stay), and the Idempotency-Key memory starts empty, as a new container's does. Record ids are derived
    from the records, and ``uuid4`` reads the OS's entropy, so nothing else is instance-unique."""
    import random

    from handlers.connectors.aws import client

    random.seed()
    client.cache_clear()
    if _app is not None:
        _app.keys = posted.KeyMemory()


def _register_snapstart_hooks() -> None:
    try:
        from snapshot_restore_py import (  # type: ignore[import-untyped]
            register_after_restore,
            register_before_snapshot,
        )
    except ImportError:  # not in the package: no SnapStart hooks to run
        return
    register_before_snapshot(prepare)
    register_after_restore(after_restore)


# The init phase: build now when the config is known (see the module's docstring).
_app: LambdaApp | None = build_at_init(LambdaApp.from_environment)
_register_snapstart_hooks()
if _app is not None and os.environ.get("AWS_LAMBDA_INITIALIZATION_TYPE") == "provisioned-concurrency":
    prepare()
