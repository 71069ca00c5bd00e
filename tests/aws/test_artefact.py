"""The `sam build` artefact and the Lambda init phase.

The artefact is built by the Makefile target sam runs (for this machine's Python and architecture) and
started as Lambda starts it: a clean interpreter with only the artefact on its path, writing nothing.
The init-phase tests import ``handlers.aws_lambda`` (and ``handlers.gcp_functions``) in fresh processes, as
Lambda (and functions-framework) does once per sandbox.
"""

from __future__ import annotations

import importlib.util
import json
import os
import pathlib
import subprocess
import sys
import sysconfig

import pytest

from benchmarks._aws import basic_config, create_state_table
from benchmarks.cold_start import RUNTIME_PYTHON, WHEEL_PLATFORM, build_artefact, clean_interpreter

ROOT = pathlib.Path(__file__).resolve().parents[2]
EVENT = {"someNum": 254, "someDict": {"someFixed": "foobar"}, "someString": "bcd6b1bc88c2c8bd"}


@pytest.fixture(scope="module")
def artefact(tmp_path_factory) -> pathlib.Path:
    return build_artefact(tmp_path_factory.mktemp("sam-build") / "PipelineFunction")


def test_the_artefact_holds_what_the_function_runs_and_nothing_else(artefact):
    shipped = {p.name for p in artefact.iterdir()}
    assert {"agglo_core", "handlers", "pipelines", "boto3", "botocore", "pydantic", "aws_lambda_powertools",
            "aws_xray_sdk", "orjson", "snapshot_restore_py.py"} <= shipped
    assert {p.name for p in (artefact / "handlers").iterdir()} - {"__pycache__"} == {
        "__init__.py", "aws_lambda.py", "runtime", "sources", "connectors"}
    # No tools, services or tests: not ours, not the dependencies'; no console scripts.
    assert "bin" not in shipped and "tests" not in shipped and "benchmarks" not in shipped
    for path in artefact.rglob("*"):
        rel = path.relative_to(artefact).as_posix()
        assert not rel.startswith(("handlers/authoring", "handlers/daemons", "handlers/entwine")), rel
        assert path.name not in ("local.py", "gcp_functions.py", "conftest.py"), rel
        assert not (path.is_dir() and path.name in ("tests", "test")), rel


def test_every_module_is_compiled_for_the_runtime_unchecked(artefact):
    """A .pyc for every .py, for the runtime's Python, trusted without reading its source's timestamp."""
    sources = list(artefact.rglob("*.py"))
    assert len(sources) > 500
    for source in sources:
        cached = pathlib.Path(importlib.util.cache_from_source(str(source)))
        assert cached.is_file(), f"no bytecode for {source.relative_to(artefact)}"
        header = cached.read_bytes()[:16]
        assert header[:4] == importlib.util.MAGIC_NUMBER, source
        # PEP 552 flags: bit 0 hash-based, bit 1 check the source. 0b01 is unchecked-hash.
        assert int.from_bytes(header[4:8], "little") == 0b01, source


# Records every source compiled and every module imported, then runs one event directly.
CLEAN_START = """
import json, sys
compiled = []
sys.addaudithook(lambda event, args: compiled.append(str(args[1])) if event == "compile" else None)
sys.path[:0] = [sys.argv[1]]
from handlers.aws_lambda import handler
answer = handler([json.loads(sys.argv[2])], None)
files = sorted({m.__file__ for m in list(sys.modules.values()) if getattr(m, "__file__", None)})
print(json.dumps({"answer": answer, "compiled": compiled, "files": files}))
"""


def test_a_clean_interpreter_runs_the_artefact_without_compiling_anything(artefact, tmp_path):
    config = basic_config(tmp_path, f"sqlite:{tmp_path / 'state.db'}")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "AGGLO_"))}
    proc = subprocess.run(clean_interpreter("-c", CLEAN_START, str(artefact), json.dumps(EVENT)),
                          env={**env, "AGGLO_CONFIG": str(config)},
                          cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["answer"]["errors"] == [] and len(result["answer"]["outputs"]) == 1
    assert [f for f in result["compiled"] if f.startswith(str(artefact))] == []
    stdlib = sysconfig.get_paths()["stdlib"]
    assert [f for f in result["files"] if not f.startswith((str(artefact), stdlib))] == []
    assert any(f.startswith(str(artefact / "pydantic")) for f in result["files"])


def test_each_config_ships_with_its_plan_and_the_function_starts_from_it_without_pydantic(artefact, tmp_path):
    configs = sorted((artefact / "pipelines").glob("*.json"))
    assert configs and all((c.with_suffix(".plan") / "plan.json").is_file() for c in configs)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "AGGLO_"))}
    proc = subprocess.run(clean_interpreter("-c", CLEAN_START, str(artefact), json.dumps(EVENT)),
                          env={**env, "AGGLO_CONFIG": "pipelines/basic.json", "LAMBDA_TASK_ROOT": str(artefact)},
                          cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "validating the config in full" not in proc.stderr
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["answer"]["errors"] == [] and len(result["answer"]["outputs"]) == 1
    assert not any(f.startswith(str(artefact / "pydantic")) for f in result["files"])
    assert [f for f in result["compiled"] if f.startswith(str(artefact))] == []


def test_the_same_interpreter_compiles_sources_that_have_no_bytecode(artefact, tmp_path):
    """The audit above can see compilation: a copy of one module without its .pyc is compiled."""
    config = basic_config(tmp_path, f"sqlite:{tmp_path / 'state.db'}")
    lambda_module = artefact / "handlers" / "aws_lambda.py"
    cached = pathlib.Path(importlib.util.cache_from_source(str(lambda_module)))
    saved = cached.read_bytes()
    cached.unlink()
    try:
        proc = subprocess.run(clean_interpreter("-c", CLEAN_START, str(artefact), json.dumps(EVENT)),
                              env={"PATH": os.environ["PATH"], "AGGLO_CONFIG": str(config)},
                              cwd=tmp_path, capture_output=True, text=True, timeout=120)
        written = cached.exists()  # as on Lambda's read-only code directory: nothing is written back
    finally:
        cached.write_bytes(saved)
    assert proc.returncode == 0, proc.stderr[-3000:]
    compiled = json.loads(proc.stdout.strip().splitlines()[-1])["compiled"]
    assert [f for f in compiled if f.startswith(str(artefact))] == [str(lambda_module)]
    assert not written


def _make(tmp_path: pathlib.Path, *variables: str) -> subprocess.CompletedProcess:
    return subprocess.run(["make", "-s", "--no-print-directory", "build-PipelineFunction",
                           f"ARTIFACTS_DIR={tmp_path / 'out'}", *variables],
                          cwd=ROOT, capture_output=True, text=True, timeout=600)


def test_the_build_refuses_bytecode_for_another_python(tmp_path):
    other = f"3.{sys.version_info.minor + 1}"
    proc = _make(tmp_path, f"LAMBDA_PYTHON={other}", f"LAMBDA_BUILD_PYTHON={sys.executable}")
    assert proc.returncode != 0
    assert f"the function runs Python {other}" in proc.stderr and f"is Python {RUNTIME_PYTHON}" in proc.stderr
    assert "LAMBDA_BYTECODE=no" in proc.stderr
    assert not (tmp_path / "out").exists()  # refused before anything was copied


def test_without_bytecode_the_build_says_so_and_ships_sources(tmp_path):
    proc = _make(tmp_path, f"LAMBDA_PYTHON={RUNTIME_PYTHON}", f"LAMBDA_PLATFORM={WHEEL_PLATFORM}",
                 f"LAMBDA_BUILD_PYTHON={sys.executable}", "LAMBDA_BYTECODE=no")
    assert proc.returncode == 0, proc.stderr
    assert "no bytecode; every cold start compiles" in proc.stderr
    out = tmp_path / "out"
    assert (out / "handlers" / "aws_lambda.py").is_file() and (out / "botocore").is_dir()
    assert not list(out.rglob("__pycache__"))


# --- what the configs need ------------------------------------------------------------------------------

def test_the_default_build_packages_what_every_shipped_config_needs(artefact):
    """Every pipelines/*.json ships: gcp.json keeps its state in Redis and tees to Pub/Sub and GCS, the entwine
    configs sign with cryptography; so all of them are in, with the Lambda's own dependencies."""
    assert sorted(p.name for p in (artefact / "pipelines").glob("*.json")) == sorted(
        p.name for p in (ROOT / "pipelines").glob("*.json"))
    for package in ("redis", "cryptography", "google/cloud/pubsub_v1", "google/cloud/storage", "boto3"):
        assert (artefact / package).is_dir(), package
    assert not (artefact / "google" / "cloud" / "firestore").exists()  # no shipped config keeps state there


def _build_for(out: pathlib.Path, *configs: pathlib.Path) -> subprocess.CompletedProcess:
    return subprocess.run(["make", "-s", "--no-print-directory", "build-PipelineFunction", f"ARTIFACTS_DIR={out}",
                           f"LAMBDA_PYTHON={RUNTIME_PYTHON}", f"LAMBDA_PLATFORM={WHEEL_PLATFORM}",
                           f"LAMBDA_BUILD_PYTHON={sys.executable}", f"LAMBDA_TASK_ROOT={out}", "LAMBDA_BYTECODE=no",
                           f"LAMBDA_CONFIGS={' '.join(map(str, configs))}"],
                          cwd=ROOT, capture_output=True, text=True, timeout=600)


def test_a_build_of_configs_using_neither_redis_nor_entwine_has_neither(tmp_path):
    out = tmp_path / "out"
    proc = _build_for(out, ROOT / "pipelines/aws-basic.json", ROOT / "pipelines/basic.json")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "the configs also need" not in proc.stderr
    assert sorted(p.name for p in (out / "pipelines").iterdir()) == [
        "aws-basic.json", "aws-basic.plan", "basic.json", "basic.plan"]
    assert (out / "boto3").is_dir() and (out / "pydantic").is_dir()
    for package in ("redis", "cryptography", "google/cloud"):
        assert not (out / package).exists(), package


def test_a_build_of_a_config_keeping_state_in_redis_ships_redis_and_runs_on_it(tmp_path, redis_kv_url):
    import redis

    config = basic_config(tmp_path, redis_kv_url)
    out = tmp_path / "out"
    proc = _build_for(out, config)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "the configs also need: redis>=5.0" in proc.stderr
    assert (out / "redis").is_dir() and not (out / "cryptography").exists()
    # The function, from the artefact alone and the shipped plan, keeps its state in the real Redis.
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "AGGLO_"))}
    run = subprocess.run(clean_interpreter("-c", CLEAN_START, str(out), json.dumps(EVENT)),
                         env={**env, "AGGLO_CONFIG": f"pipelines/{config.name}", "LAMBDA_TASK_ROOT": str(out)},
                         cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-3000:]
    result = json.loads(run.stdout.strip().splitlines()[-1])
    assert result["answer"]["errors"] == [] and len(result["answer"]["outputs"]) == 1
    assert any(f.startswith(str(out / "redis")) for f in result["files"])
    assert redis.Redis.from_url(redis_kv_url).dbsize() > 0


def test_a_build_of_a_config_agglo_refuses_stops_saying_why(tmp_path):
    config = basic_config(tmp_path, "local")  # binge's cicd_pipeline.json's KV store: no connector's
    proc = _build_for(tmp_path / "out", config)
    assert proc.returncode != 0
    assert f"{config.name}: externalSystems[2].connectionString: " in proc.stderr
    assert "cannot derive the requirements" in proc.stderr


# --- the init phase ------------------------------------------------------------------------------------

def _python(script: str, env: dict[str, str], cwd: pathlib.Path) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items() if not k.startswith("AGGLO_")}
    return subprocess.run([sys.executable, "-c", script], env={**base, "PYTHONPATH": str(ROOT), **env}, cwd=cwd,
                          capture_output=True, text=True, timeout=120)


def test_the_plan_and_connectors_are_built_at_import(tmp_path):
    config = basic_config(tmp_path, f"sqlite:{tmp_path / 'state.db'}")
    script = f"""
import json, os
from handlers import aws_lambda
os.remove({str(config)!r})  # read and built already: the invocation does not need it
print(json.dumps(aws_lambda.handler([{EVENT!r}], None)))
"""
    proc = _python(script, {"AGGLO_CONFIG": str(config)}, tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    answer = json.loads(proc.stdout.strip().splitlines()[-1])
    assert answer["errors"] == [] and answer["outputs"][0]["someNum"] == 254


def test_without_a_config_the_import_builds_nothing_and_the_first_invocation_says_what_is_missing(tmp_path):
    script = """
from handlers import aws_lambda
try:
    aws_lambda.handler([], None)
except Exception as e:
    print(type(e).__name__, e)
"""
    proc = _python(script, {}, tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "ConfigSourceError AGGLO_CONFIG is not set" in proc.stdout


def _broken_configs(tmp_path: pathlib.Path) -> dict[str, tuple[str, str]]:
    """AGGLO_CONFIG -> what the init error must say."""
    good = json.loads((ROOT / "pipelines/basic.json").read_text())
    unknown_scheme = json.loads(json.dumps(good))
    unknown_scheme["externalSystems"][2]["connectionString"] = "nosuchstore:table=x"
    bad_regex = json.loads(json.dumps(good))
    transformer = next(p for p in bad_regex["processDefinitions"] if "transformer" in p)
    transformer["transformer"]["specs"][0]["transformation"]["mapRegexArgs"]["regex"] = "(unclosed"
    files = {"not-json.json": b"{\"pipelines\": [", "unknown-scheme.json": json.dumps(unknown_scheme).encode(),
             "bad-regex.json": json.dumps(bad_regex).encode()}
    for name, body in files.items():
        (tmp_path / name).write_bytes(body)
    return {str(tmp_path / "missing.json"): ("ConfigSourceError", "no such file"),
            str(tmp_path / "not-json.json"): ("ConfigError", "JSON"),
            str(tmp_path / "unknown-scheme.json"): ("ConfigError", "unknown scheme 'nosuchstore:'"),
            str(tmp_path / "bad-regex.json"): ("ConfigError", "(unclosed")}


def test_a_config_that_cannot_start_fails_the_import_saying_which_and_why(tmp_path):
    for path, (cause, words) in _broken_configs(tmp_path).items():
        proc = _python("import handlers.aws_lambda", {"AGGLO_CONFIG": path}, tmp_path)
        assert proc.returncode != 0, path
        cause_shown, _, message = proc.stderr.rpartition("handlers.runtime.boot.InitError: ")
        assert message.startswith(f"agglo cannot start: AGGLO_CONFIG={path}: "), proc.stderr[-3000:]
        assert words in message, (path, message)
        assert f"{cause}:" in cause_shown  # the cause's traceback is kept above it


@pytest.mark.parametrize("initialization", ["on-demand", "provisioned-concurrency"])
def test_provisioned_concurrency_prepares_clients_and_imports_at_init(aws, tmp_path, initialization):
    """Provisioned concurrency runs the init ahead of traffic: what the first invocation would do is done there;
    on demand, the init is part of a request's wait, so it does only what every invocation needs."""
    config = basic_config(tmp_path, "dynamo:tableName=state")
    script = """
import json, sys
from handlers import aws_lambda
from handlers.connectors import aws as clients
print(json.dumps({"clients": clients.client.cache_info().currsize,
                  "batch": "aws_lambda_powertools.utilities.batch" in sys.modules}))
"""
    proc = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(ROOT), "AGGLO_CONFIG": str(config),
                               "AWS_LAMBDA_INITIALIZATION_TYPE": initialization})
    assert proc.returncode == 0, proc.stderr[-3000:]
    prepared = initialization == "provisioned-concurrency"
    assert json.loads(proc.stdout) == {"clients": 2 if prepared else 0, "batch": prepared}


def test_cloud_functions_build_at_import_too(tmp_path):
    """The same init phase for Cloud Functions: built when functions-framework imports the module."""
    config = basic_config(tmp_path, f"sqlite:{tmp_path / 'state.db'}")
    script = f"""
import os
from handlers import gcp_functions
os.remove({str(config)!r})
print(len(gcp_functions.app().runtime.plan.ir.pipelines))
"""
    built = _python(script, {"AGGLO_CONFIG": str(config)}, tmp_path)
    # Without a compiled plan beside the config it is validated, and the function's log (stdout) says so first.
    *logged, count = built.stdout.strip().splitlines()
    assert built.returncode == 0 and count == "1", built.stderr[-3000:]
    assert len(logged) == 1 and "validating the config in full" in logged[0]
    missing = str(tmp_path / "missing.json")
    failed = _python("import handlers.gcp_functions", {"AGGLO_CONFIG": missing}, tmp_path)
    assert failed.returncode != 0
    assert f"InitError: agglo cannot start: AGGLO_CONFIG={missing}: no such file" in failed.stderr


SNAPSHOT_AND_RESTORE = """
import json, os, random, sys
import snapshot_restore_py
from handlers import aws_lambda
from handlers.connectors import aws as clients

# The init phase ran at import; SnapStart then runs the before-snapshot hooks and takes the snapshot.
for hook, args, kwargs in snapshot_restore_py.get_before_snapshot():
    hook(*args, **kwargs)
snapshot = {"prepared": "aws_lambda_powertools.utilities.batch" in sys.modules,
            "clients": clients.client.cache_info().currsize}
event = json.loads(sys.argv[1])
snapshot_random = random.getstate()
read, write = os.pipe()
children = []
for restore_hooks in (True, True, False, False):  # two sandboxes restored with the hooks, two without
    pid = os.fork()
    if pid == 0:
        # A restore brings the snapshot's memory back as it was (a fork reseeds random: undo that).
        random.setstate(snapshot_random)
        snapshot_client = clients.client("dynamodb")
        if restore_hooks:
            for hook, args, kwargs in snapshot_restore_py.get_after_restore():
                hook(*args, **kwargs)
        drawn = random.random()
        fresh_client = clients.client("dynamodb") is not snapshot_client
        answer = aws_lambda.handler(event, None)
        line = json.dumps({"hooks": restore_hooks, "random": drawn, "fresh_client": fresh_client,
                           "answer": answer})
        os.write(write, (line + "\\n").encode())
        os._exit(0)
    children.append(pid)
for pid in children:
    os.waitpid(pid, 0)
os.close(write)
with os.fdopen(read) as lines:
    print(json.dumps({"snapshot": snapshot, "sandboxes": [json.loads(line) for line in lines]}))
"""


def _sqs_event(message_id: str) -> dict:
    return {"Records": [{"messageId": message_id, "receiptHandle": "h", "body": json.dumps(EVENT),
                         "attributes": {"ApproximateReceiveCount": "1"}, "messageAttributes": {},
                         "eventSource": "aws:sqs", "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:in",
                         "awsRegion": "us-east-1"}]}


def test_snapstart_hooks_prepare_the_snapshot_and_make_each_restored_sandbox_its_own(aws, tmp_path):
    import boto3

    dynamodb = boto3.client("dynamodb")
    create_state_table(dynamodb)
    config = basic_config(tmp_path, "dynamo:tableName=state")
    proc = subprocess.run([sys.executable, "-c", SNAPSHOT_AND_RESTORE, json.dumps(_sqs_event("snap-1"))],
                          env={**os.environ, "PYTHONPATH": str(ROOT), "AGGLO_CONFIG": str(config)},
                          cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["snapshot"] == {"prepared": True, "clients": 2}  # DynamoDB for the state, S3 for triggers
    restored = [s for s in result["sandboxes"] if s["hooks"]]
    unrestored = [s for s in result["sandboxes"] if not s["hooks"]]
    assert len(restored) == len(unrestored) == 2
    assert all(s["answer"] == {"batchItemFailures": []} for s in result["sandboxes"])
    # Restored with the hooks: their own random state (retry jitter) and new AWS clients and connections.
    assert restored[0]["random"] != restored[1]["random"]
    assert all(s["fresh_client"] for s in restored)
    # Without them every sandbox would draw the snapshot's numbers and share its clients' connections.
    assert unrestored[0]["random"] == unrestored[1]["random"]
    assert not any(s["fresh_client"] for s in unrestored)
    # The same record in every sandbox: deduplicated by its id, counted once.
    [item] = [i for i in dynamodb.scan(TableName="state")["Items"] if i["pk"]["S"].endswith("someNum:AggSum")]
    assert float(item["f:value"]["N"]) == 254
