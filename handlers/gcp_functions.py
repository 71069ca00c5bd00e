"""Google Cloud Functions entry points (functions-framework).

* ``on_cloud_event`` — CloudEvents: Pub/Sub ``messagePublished`` and GCS
  ``object.v1.finalized``.
* ``on_http`` — HTTP: a Pub/Sub push subscription's envelope, or events POSTed
  directly (one JSON object or an array, one record per element; record ids,
  the ``Idempotency-Key``'s 409 and the answer are ``handlers.sources.posted``'s,
  as in ``agglo serve``).

Failures are settled by ``handlers.runtime.settlement`` (the README's "Failure
settlement" table), so that one bad message never loops forever and nothing is
lost; this module only says it in Cloud Functions' words:

* ``dead_letter`` (a record whose own data is at fault, with ``AGGLO_DEAD_LETTER``
  set, say to a Pub/Sub topic) and ``drop`` (the same without one: logged at
  ERROR): the message is acknowledged.
* ``retry`` (an outside system failed, after the runtime's retries): the function
  answers with an error (an exception for a CloudEvent, 503 to a push), so Pub/Sub
  (or Eventarc) delivers it again; the records that succeeded are not counted twice
  on redelivery (their state changes carry dedupe marks, their outputs
  deterministic ids).
* direct HTTP posts: 200, 422 when a record's data is at fault, 503 with
  ``Retry-After`` when an outside system failed.

At cold start (when the module is imported, before the first request) the config
comes from ``AGGLO_CONFIG`` (a path, or a ``gs://`` URI) and is compiled once (from
its compiled artefact, without pydantic, when there is one for exactly that config:
``handlers.runtime.artefact``); a
config that cannot start fails the instance's start with ``InitError`` saying
why. Connectors are built once and their clients on first use.
``PUBSUB_EMULATOR_HOST`` and ``STORAGE_EMULATOR_HOST`` are honoured. Logs
are JSON lines in Cloud Logging's format (``severity``, ``message``, the record
id as a label, the request's trace where it has one).
"""

from __future__ import annotations

import contextvars
import logging
import os
import sys
from collections.abc import Iterator
from typing import Any

import functions_framework
import orjson

from agglo_core import Outcome
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
from handlers.sources import TriggerRecord, posted
from handlers.sources import gcp as sources

CHUNK = 500
MAX_BODY = 10 << 20
log = logging.getLogger("agglo.gcp")


class TransientFailure(RuntimeError):
    """Makes the function answer with an error, so the platform redelivers."""


_trace: contextvars.ContextVar[str | None] = contextvars.ContextVar("agglo_trace", default=None)


def _set_trace(header: str | None) -> None:
    """Tie this request's logs to its trace: ``X-Cloud-Trace-Context`` or a W3C ``traceparent``."""
    trace_id = None
    if header:
        trace_id = header.split("-")[1] if header.count("-") >= 3 else header.split("/")[0]
    project = os.environ.get("GOOGLE_CLOUD_PROJECT") or os.environ.get("GCP_PROJECT")
    _trace.set(f"projects/{project}/traces/{trace_id}" if trace_id and project else None)


class CloudLoggingFormatter(logging.Formatter):
    """One JSON object per line, as Cloud Logging reads them from stdout."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {"severity": record.levelname, "message": record.getMessage(),
                                 "logger": record.name}
        trace = _trace.get()
        if trace:
            entry["logging.googleapis.com/trace"] = trace
        labels = getattr(record, "labels", None)
        if labels:
            entry["logging.googleapis.com/labels"] = labels
        details = getattr(record, "details", None)
        if details:
            entry["agglo"] = details
        if record.exc_info:
            entry["stack_trace"] = self.formatException(record.exc_info)
        return orjson.dumps(entry, default=str).decode()


def _configure_logging() -> None:
    root = logging.getLogger("agglo")
    if not any(isinstance(h.formatter, CloudLoggingFormatter) for h in root.handlers):
        handler = logging.StreamHandler(sys.stdout)
        handler.setFormatter(CloudLoggingFormatter())
        root.addHandler(handler)
        root.setLevel(os.environ.get("AGGLO_LOG_LEVEL", "INFO"))
        root.propagate = False


class CloudFunctionApp:
    """Everything a Cloud Functions instance builds once: the runtime and where poison records go."""

    def __init__(self, runtime: Runtime, dead_letter: str | None) -> None:
        self.runtime = runtime
        self.dead_letter = dead_letter
        self.keys = posted.KeyMemory()  # this instance's recent Idempotency-Keys (the README says what it covers)

    @classmethod
    def from_environment(cls) -> CloudFunctionApp:
        from handlers.runtime.boot import serverless_plan
        from handlers.runtime.config_source import read_config_source
        from handlers.runtime.execs import ExecRunner, allow_list_from

        _configure_logging()
        plan = serverless_plan(read_config_source())
        runtime = Runtime.build(plan, default_registry(), ExecRunner(allow_list_from(None)))
        return cls(runtime, runtime.dead_letter_target(os.environ.get("AGGLO_DEAD_LETTER")))

    def run(self, items: list[TriggerRecord], source: str, budget: RetryBudget | None = None) -> list[Outcome]:
        outcomes = self.runtime.process([i.record(source) for i in items], budget)
        for o in outcomes:
            for e in o.errors:
                log.error("record failed: %s", e.message, extra={
                    "labels": {"record_id": o.record.id}, "details": e.to_dict()})
        return outcomes

    def settle(self, outcomes: list[Outcome], trigger: Trigger) -> list[Verdict]:
        """Settle each record; raise if any must be delivered again (the message is then not acknowledged)."""
        verdicts = self.runtime.settle(outcomes, SettlementPolicy(trigger, self.dead_letter))
        again = [o for o, v in zip(outcomes, verdicts, strict=True) if v in FAILED]
        if again:
            raise TransientFailure(f"{len(again)} record(s) failed for a reason outside them or could not reach "
                                   f"the dead-letter output; first: {again[0].errors[0]}")
        return verdicts

    def cloud_event(self, event: Any) -> None:
        kind, data = event["type"], event.get_data() if hasattr(event, "get_data") else event.data
        _set_trace(event.get("traceparent") if hasattr(event, "get") else None)
        if kind == sources.PUBSUB_PUBLISHED:
            self.settle(self.run([sources.pubsub_item(data["message"])], "pubsub"), Trigger.PUBSUB)
        elif kind == sources.GCS_FINALIZED:
            budget = self.runtime.retry_budget()  # the invocation's, not each chunk's
            for chunk in self._gcs_chunks(*sources.gcs_object(data)):
                self.settle(self.run(chunk, "gcs", budget), Trigger.GCS)
        else:
            raise ValueError(f"unsupported CloudEvent type {kind!r} (supported: {sources.PUBSUB_PUBLISHED}, "
                             f"{sources.GCS_FINALIZED})")

    @staticmethod
    def _gcs_chunks(bucket: str, name: str, generation: str | None) -> Iterator[list[TriggerRecord]]:
        from handlers.connectors.gcs import open_object
        from handlers.sources.jsonfile import Limits, read_records

        limits = Limits.from_environment()  # AGGLO_MAX_LINE_BYTES, AGGLO_MAX_DECOMPRESSED_BYTES
        chunk: list[TriggerRecord] = []
        with open_object(bucket, name, generation) as stream:
            # Damaged or oversized data is one failed record after the ones before it, not an exception.
            for n, payload, _, proof in read_records(stream, limits):
                chunk.append(TriggerRecord(sources.gcs_record_id(bucket, name, generation, n), payload, proof=proof))
                if len(chunk) >= CHUNK:
                    yield chunk
                    chunk = []
        if chunk:
            yield chunk

    def http(self, request: Any) -> tuple[Any, ...]:
        _set_trace(request.headers.get("X-Cloud-Trace-Context") or request.headers.get("traceparent"))
        if (request.content_length or 0) > MAX_BODY:
            return {"error": f"body larger than {MAX_BODY} bytes"}, 413
        raw = request.get_data().removeprefix(b"\xef\xbb\xbf")  # a UTF-8 BOM some clients put first
        try:
            body = orjson.loads(raw)
        except orjson.JSONDecodeError as e:
            return {"error": f"body is not valid JSON: {e}"}, 400
        if sources.is_push_envelope(body):
            try:
                self.settle(self.run([sources.pubsub_item(body["message"])], "pubsub"), Trigger.PUBSUB)
            except TransientFailure as e:
                return {"error": str(e)}, 503  # not acknowledged: Pub/Sub pushes it again
            return "", 204
        try:
            events, array = posted.accept(raw, request.headers.get("Idempotency-Key"), self.keys)
        except posted.BadRequest as e:
            return {"error": str(e)}, 400
        except posted.KeyConflict as e:
            return {"error": str(e)}, 409
        outcomes = self.run([e.item for e in events], "http")
        status, answer = posted.http_answer(outcomes, self.runtime.settle(outcomes, SettlementPolicy(Trigger.HTTP)),
                                            array)
        if status == 503:
            return answer, status, {"Retry-After": str(RETRY_AFTER_S)}
        return answer, status


def app() -> CloudFunctionApp:
    global _app
    if _app is None:
        _app = CloudFunctionApp.from_environment()
    return _app


def reset() -> None:
    """Forget the cold-start state (tests; a new config or environment)."""
    global _app
    _app = None


# The instance's start: build now when the config is known, lazily otherwise (tests importing the module).
_app: CloudFunctionApp | None = build_at_init(CloudFunctionApp.from_environment)


@functions_framework.cloud_event
def on_cloud_event(cloud_event: Any) -> None:
    app().cloud_event(cloud_event)


@functions_framework.http
def on_http(request: Any) -> Any:
    return app().http(request)

