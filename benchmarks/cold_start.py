"""Workload 3: a Lambda cold start, agglo against a minimal Powertools handler, on moto.

Each side is the package Lambda would run, started the way Lambda starts it: agglo's
is the ``sam build`` artefact (the Makefile's ``build-PipelineFunction`` target, built
for this machine's Python and architecture), the baseline a ``pip --target`` package
of Powertools and boto3 beside a bare handler module, compiled the same way. Each run
is a fresh interpreter (``-I -S -B``: no site-packages, no user paths, only the package on
``sys.path``, writing no bytecode, as on Lambda's read-only code directory)
that imports its handler, initialises and handles one SQS record; the wall time from
spawn to exit is compared, and the time to import (Lambda's init phase) and to handle
the record (the first invocation) are reported apart. agglo runs
``pipelines/aws-basic.json`` (binge's basic pipeline with an S3 tee, an SQS tee and
DynamoDB state, deduplicated) and ``basic.json`` on DynamoDB; the baseline is a
Powertools ``BatchProcessor`` handler that creates a boto3 DynamoDB client and does
one ``UpdateItem``.

Each config has its compiled plan beside it (``X.plan`` for ``X.json``: the artefact's
own configs are compiled by the build, the benchmark's copy of ``basic.json`` by
``compile_beside``), so agglo starts as a deployed function does: from the plan, without
pydantic.

``python -m benchmarks.cold_start [--runs N]`` measures both packages with and
without bytecode and prints where agglo's import time goes (``-X importtime``).
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time

from benchmarks._aws import ROOT, basic_config, create_state_table, moto_server

BASELINE = "Powertools + boto3"
RUNTIME_PYTHON = f"{sys.version_info[0]}.{sys.version_info[1]}"
WHEEL_PLATFORM = f"manylinux2014_{platform.machine()}"
BASELINE_REQUIREMENTS = ("aws-lambda-powertools>=3.0", "boto3>=1.34")

# What each side's process runs: the package alone on sys.path, then import (init) and one invocation, timed.
STARTER = """
import sys, time
started = time.perf_counter()
sys.path[:0] = [sys.argv[2]]
import json
from {module} import handler
imported = time.perf_counter()
with open(sys.argv[1]) as f:
    answer = handler(json.load(f), None)
handled = time.perf_counter()
assert answer == {{"batchItemFailures": []}}, answer
print(json.dumps({{"init": imported - started, "invoke": handled - imported}}))
"""

BASELINE_HANDLER = '''"""A bare Powertools batch handler: one DynamoDB UpdateItem per SQS record."""
import json

import boto3
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response

processor = BatchProcessor(event_type=EventType.SQS)
dynamodb = boto3.client("dynamodb")


def record_handler(record):
    event = json.loads(record.body)
    dynamodb.update_item(TableName="state", Key={"pk": {"S": "sum"}}, UpdateExpression="ADD #v :n",
                         ExpressionAttributeNames={"#v": "value"},
                         ExpressionAttributeValues={":n": {"N": str(event["someNum"])}})


def handler(event, context):
    return process_partial_response(event=event, record_handler=record_handler, processor=processor,
                                    context=context)
'''


def build_artefact(dest: pathlib.Path, bytecode: bool = True) -> pathlib.Path:
    """``sam build``'s artefact, built by the Makefile target for this machine's Python and architecture."""
    subprocess.run(["make", "-s", "--no-print-directory", "build-PipelineFunction", f"ARTIFACTS_DIR={dest}",
                    f"LAMBDA_PYTHON={RUNTIME_PYTHON}", f"LAMBDA_PLATFORM={WHEEL_PLATFORM}",
                    f"LAMBDA_BUILD_PYTHON={sys.executable}", f"LAMBDA_TASK_ROOT={dest}",
                    f"LAMBDA_BYTECODE={'yes' if bytecode else 'no'}"],
                   cwd=ROOT, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    return dest


def compile_beside(config: pathlib.Path) -> pathlib.Path:
    """``agglo compile`` of ``config`` into ``X.plan`` beside it, where the function looks for it; the config."""
    subprocess.run([sys.executable, "-m", "handlers.local", "compile", "-c", str(config), "-o",
                    str(config.with_suffix(".plan"))], cwd=ROOT, check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.PIPE)
    return config


def build_baseline(dest: pathlib.Path) -> pathlib.Path:
    """Powertools and boto3 installed as the Makefile installs agglo's dependencies, and the bare handler."""
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                    "--no-warn-conflicts", "--no-compile", "--target", str(dest), "--platform", WHEEL_PLATFORM,
                    "--implementation", "cp", "--python-version", RUNTIME_PYTHON, "--only-binary=:all:",
                    *BASELINE_REQUIREMENTS], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    (dest / "baseline_handler.py").write_text(BASELINE_HANDLER)
    compile_package(dest)
    return dest


def compile_package(dest: pathlib.Path) -> None:
    """As the Makefile compiles the artefact."""
    subprocess.run([sys.executable, "-m", "compileall", "-q", "-j", "0", "--invalidation-mode", "unchecked-hash",
                    str(dest)], check=True, stdout=subprocess.DEVNULL)


def without_bytecode(package: pathlib.Path, dest: pathlib.Path) -> pathlib.Path:
    shutil.copytree(package, dest, ignore=shutil.ignore_patterns("__pycache__"))
    return dest


def clean_interpreter(*args: str) -> list[str]:
    """A fresh interpreter that sees the standard library only (its script puts the package on the path) and
    writes no bytecode, as on Lambda's read-only code directory (``-B``: ``-I`` ignores PYTHONDONTWRITEBYTECODE)."""
    return [sys.executable, "-I", "-S", "-B", *args]


def _sqs_event(message_id: str) -> dict:
    body = {"someNum": 254, "someDict": {"someFixed": "foobar"}, "someString": "bcd6b1bc88c2c8bd"}
    return {"Records": [{"messageId": message_id, "receiptHandle": "h", "body": json.dumps(body),
                         "attributes": {"ApproximateReceiveCount": "1"}, "messageAttributes": {},
                         "eventSource": "aws:sqs", "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:in",
                         "awsRegion": "us-east-1"}]}


def _spawn(module: str, package: pathlib.Path, event_file: pathlib.Path, env: dict[str, str]
           ) -> dict[str, float]:
    """Wall and CPU seconds of one fresh process, spawn to exit, and its init and invoke seconds."""
    with tempfile.TemporaryFile() as errors:
        started = time.perf_counter()
        child = subprocess.Popen(clean_interpreter("-c", STARTER.format(module=module), str(event_file),
                                                   str(package)),
                                 env=env, cwd=package, stdout=subprocess.PIPE, stderr=errors)
        assert child.stdout is not None
        out = child.stdout.read()
        _, status, usage = os.wait4(child.pid, 0)
        elapsed = time.perf_counter() - started
        child.returncode = os.waitstatus_to_exitcode(status)
        if child.returncode != 0:
            errors.seek(0)
            raise RuntimeError(f"cold start failed: {errors.read().decode()[-2000:]}")
    phases = json.loads(out.decode().strip().splitlines()[-1])
    return {"wall": elapsed, "cpu": usage.ru_utime + usage.ru_stime, **phases}


def _median(values: list[float]) -> float:
    return sorted(values)[len(values) // 2]


def measure(runs: int, bytecode: bool = True) -> dict[str, dict[str, float]]:
    """Median wall, CPU, init and invoke seconds for each side; runs alternate between the sides."""
    import boto3

    with moto_server() as aws, tempfile.TemporaryDirectory() as tmp_name:
        tmp = pathlib.Path(tmp_name)
        artefact = build_artefact(tmp / "artefact")
        baseline = build_baseline(tmp / "baseline")
        if not bytecode:
            artefact = without_bytecode(artefact, tmp / "artefact-sources")
            baseline = without_bytecode(baseline, tmp / "baseline-sources")
        dynamodb = boto3.client("dynamodb")
        create_state_table(dynamodb)
        boto3.client("s3").create_bucket(Bucket="outputs")
        queue = boto3.client("sqs").create_queue(QueueName="outputs")["QueueUrl"]
        env = {**{k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}, **aws,
               "AGGLO_STATE_TABLE": "state", "AGGLO_OUTPUT_BUCKET": "outputs",
               "AGGLO_OUTPUT_QUEUE_URL": queue, "POWERTOOLS_SERVICE_NAME": "bench",
               "POWERTOOLS_METRICS_NAMESPACE": "bench", "AWS_LAMBDA_FUNCTION_NAME": "bench"}
        sides = {
            BASELINE: ("baseline_handler", baseline, env),
            "agglo, basic.json on DynamoDB": (
                "handlers.aws_lambda", artefact,
                {**env, "AGGLO_CONFIG": str(compile_beside(basic_config(tmp, "dynamo:tableName=state")))}),
            "agglo, aws-basic.json (S3, SQS, DynamoDB)": (
                "handlers.aws_lambda", artefact,
                {**env, "AGGLO_CONFIG": str(artefact / "pipelines/aws-basic.json")}),
        }
        times: dict[str, list[dict[str, float]]] = {name: [] for name in sides}
        for i in range(runs):
            event = tmp / f"event-{i}.json"
            event.write_text(json.dumps(_sqs_event(f"cold-{i}")))
            for name, (module, package, side_env) in sides.items():
                times[name].append(_spawn(module, package, event, side_env))
        items = dynamodb.scan(TableName="state")["Items"]
        assert any(i["pk"]["S"] == "sum" and int(i["value"]["N"]) == 254 * runs for i in items), items
    return {name: {key: _median([s[key] for s in samples]) for key in samples[0]}
            for name, samples in times.items()}


def import_profile(top: int = 15) -> list[tuple[str, float]]:
    """Where importing agglo's handler from the artefact (with its config built at import) spends its time:
    self time per top-level package, most first, from ``-X importtime``."""
    with tempfile.TemporaryDirectory() as tmp_name:
        artefact = build_artefact(pathlib.Path(tmp_name) / "artefact")
        env = {**{k: v for k, v in os.environ.items() if not k.startswith("PYTHON")},
               "AWS_DEFAULT_REGION": "us-east-1",
               "AGGLO_CONFIG": str(artefact / "pipelines/aws-basic.json"), "AGGLO_STATE_TABLE": "state",
               "AGGLO_OUTPUT_BUCKET": "outputs", "AGGLO_OUTPUT_QUEUE_URL": "http://127.0.0.1:1/q"}
        proc = subprocess.run(clean_interpreter("-X", "importtime", "-c",
                                                f"import sys; sys.path[:0] = [{str(artefact)!r}]; "
                                                "import handlers.aws_lambda"),
                              env=env, cwd=artefact, capture_output=True, check=True, text=True)
    by_package: dict[str, float] = {}
    for line in proc.stderr.splitlines():
        match = re.match(r"import time:\s+(\d+) \|\s+\d+ \|\s*(\S+)", line)
        if match:
            package = match.group(2).split(".")[0]
            by_package[package] = by_package.get(package, 0.0) + int(match.group(1)) / 1e6
    return sorted(by_package.items(), key=lambda kv: -kv[1])[:top]


def _table(results: dict[str, dict[str, float]], title: str) -> None:
    base = results[BASELINE]
    print(f"\n{title}\n\n| side | wall | CPU | init | first invoke | wall vs baseline |\n|---|---|---|---|---|---|")
    for name, r in results.items():
        print(f"| {name} | {r['wall']:.3f} s | {r['cpu']:.3f} s | {r['init']:.3f} s | {r['invoke']:.3f} s | "
              f"{r['wall'] / base['wall']:.2f}× |")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="benchmarks.cold_start")
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args(argv)
    _table(measure(args.runs), f"With bytecode (medians of {args.runs})")
    _table(measure(args.runs, bytecode=False), f"Without bytecode (medians of {args.runs})")
    print("\nImport time by package (self time, agglo's handler with aws-basic.json built at import)\n")
    for package, seconds in import_profile():
        print(f"* {package}: {seconds * 1000:.0f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
