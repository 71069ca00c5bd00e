"""Configs no deployment can run are refused everywhere, before any event: a connection string no connector
takes (binge's ``cicd_pipeline.json`` keeps a KV store at ``"local"``), and a connector whose client library
is not installed, through the real ``agglo`` executable."""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys

import pytest
from _servers import AGGLO_SCRIPT, run_agglo

from handlers.runtime.artefact import artefact_data

REPO = pathlib.Path(__file__).resolve().parents[2]
STORE = 2  # pipelines/basic.json's externalSystems[2]: its aggregator's KV store
REFUSED = {
    "local": "a directory path serves ExternalLocalFile, not ExternalKVStore",
    "azure:x": "unknown scheme 'azure:'",
}


def _basic_with_store(tmp: pathlib.Path, connection_string: str) -> pathlib.Path:
    cfg = json.loads((REPO / "pipelines/basic.json").read_text())
    assert cfg["externalSystems"][STORE]["externalType"] == "ExternalKVStore"
    cfg["externalSystems"][STORE]["connectionString"] = connection_string
    path = tmp / "cicd.json"
    path.write_text(json.dumps(cfg, indent=2))
    return path


def _waiting_for_events(argv: list[str], cwd: pathlib.Path, env: dict[str, str] | None = None):
    """Run ``argv`` with its stdin open and empty: a command that waited for an event would never end."""
    proc = subprocess.Popen(argv, cwd=cwd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env={**os.environ, **(env or {})})
    try:
        out, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    return proc.returncode, out, err


def _cold_start(module: str, config: pathlib.Path, cwd: pathlib.Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGGLO_")}
    return subprocess.run([sys.executable, "-c", f"import {module}"], cwd=cwd, capture_output=True, text=True,
                          env={**env, "PYTHONPATH": str(REPO), "AGGLO_CONFIG": str(config)}, timeout=120)


@pytest.mark.parametrize("connection_string", sorted(REFUSED))
def test_cicd_pipeline_local_kv_store_is_refused(connection_string, tmp_path):
    """binge accepts the config and fails at run time; agglo refuses it at its JSON path in every tool and at
    every adapter's start."""
    path = _basic_with_store(tmp_path, connection_string)
    where = f"externalSystems[{STORE}].connectionString: "
    problem = where + REFUSED[connection_string]

    validated = run_agglo(["validate", "-c", str(path)], cwd=tmp_path)
    assert validated.returncode == 1 and f"{path}: {problem}" in validated.stdout.decode()

    linted = run_agglo(["lint", "--format", "json", str(path)], cwd=tmp_path)
    findings = json.loads(linted.stdout)
    assert linted.returncode == 1
    assert [(f["path"], f["level"]) for f in findings if REFUSED[connection_string] in f["message"]] == [
        (where.removesuffix(": "), "error")]

    compiled = run_agglo(["compile", "-c", str(path), "-o", str(tmp_path / "plan")], cwd=tmp_path)
    assert compiled.returncode == 2 and problem in compiled.stderr.decode()
    assert not (tmp_path / "plan").exists()

    status, out, err = _waiting_for_events([*AGGLO_SCRIPT, "run", "-c", str(path)], tmp_path)
    assert status == 2 and out == "" and problem in err

    for module in ("handlers.aws_lambda", "handlers.gcp_functions"):
        started = _cold_start(module, path, tmp_path)
        assert started.returncode != 0, module
        assert f"InitError: agglo cannot start: AGGLO_CONFIG={path}: " in started.stderr, started.stderr[-2000:]
        assert problem in started.stderr, module


def test_a_compiled_plan_naming_an_unknown_connector_is_refused_at_cold_start(tmp_path):
    """A function starting from a plan does not validate its config: the registry refuses the connector."""
    good = _basic_with_store(tmp_path, "sqlite:state.db")
    done = run_agglo(["compile", "-c", str(good), "-o", str(tmp_path / "cicd.plan")], cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    # The plan and its config as a plan from another agglo (or edited by hand) could have them: "local" for both.
    raw = good.read_bytes().replace(b'"sqlite:state.db"', b'"local"')
    good.write_bytes(raw)
    plan_file = tmp_path / "cicd.plan" / "plan.json"
    plan = json.loads(plan_file.read_text())
    assert plan["keyFiles"] == []
    plan_file.write_bytes(artefact_data(raw, _ir_with(plan["ir"], "sqlite:state.db", "local"), ()))
    for module in ("handlers.aws_lambda", "handlers.gcp_functions"):
        started = _cold_start(module, good, tmp_path)
        assert started.returncode != 0, module
        assert "validating the config in full" not in started.stderr + started.stdout  # it started from the plan
        assert "InitError: agglo cannot start" in started.stderr and "'local'" in started.stderr, started.stderr


def _ir_with(ir_data: dict, old: str, new: str):
    from agglo_core.ir import PlanIR

    return PlanIR.from_data(json.loads(json.dumps(ir_data).replace(json.dumps(old), json.dumps(new))))


BLOCKED_BOTO3 = "import sys\nsys.modules['boto3'] = sys.modules['botocore'] = None  # as if not installed\n"


def test_a_missing_client_library_stops_agglo_run_before_any_event_naming_the_extra(tmp_path):
    """The real ``agglo`` executable, with boto3 not importable (a sitecustomize that blocks it)."""
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(BLOCKED_BOTO3)
    path = _basic_with_store(tmp_path, "dynamo:tableName=state")
    env = {"PYTHONPATH": str(site), "AWS_DEFAULT_REGION": "us-east-1"}
    probe = subprocess.run([sys.executable, "-c", "import boto3"], env={**os.environ, **env}, capture_output=True)
    assert probe.returncode != 0  # the block holds in a child interpreter
    status, out, err = _waiting_for_events([*AGGLO_SCRIPT, "run", "-c", str(path)], tmp_path, env)
    assert status == 2 and out == ""
    assert "external system 'AggregatorStateKVStore'" in err and "DynamoDB needs the Python package boto3" in err
    assert err.rstrip().endswith("pip install 'agglo[aws]'")
    assert "Traceback" not in err
