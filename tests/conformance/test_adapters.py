"""One pipeline, one set of events, the same outputs through every adapter.

Each adapter runs the config in a directory of its own, so against fresh
embedded state (SQLite, local files). Tee uuids derive from record ids, which differ by adapter (a file line,
an invocation), so they are left out of the comparison; everything else must
be equal. Adapters join this test as they arrive.
"""

from __future__ import annotations

import json
import pathlib
import subprocess
import sys
import urllib.request
from collections.abc import Callable
from types import SimpleNamespace

import pytest
from builders import without_uuids

REPO = pathlib.Path(__file__).resolve().parents[2]
Runner = Callable[[pathlib.Path, list[dict]], list[dict]]


def local_copy(config: str, workdir: pathlib.Path) -> pathlib.Path:
    """The example config in ``workdir``: its relative state and output paths land there too."""
    path = workdir / config
    path.write_text((REPO / "pipelines" / config).read_text())
    return path


def agglo_run(config: pathlib.Path, events: list[dict]) -> list[dict]:
    proc = subprocess.run([sys.executable, "-m", "handlers.local", "run", "-c", str(config)],
                          input="".join(json.dumps(e) + "\n" for e in events).encode(), capture_output=True,
                          cwd=config.parent, timeout=120)
    assert proc.returncode == 0, proc.stderr.decode()
    return [json.loads(line) for line in proc.stdout.splitlines()]


def lambda_direct(config: pathlib.Path, events: list[dict]) -> list[dict]:
    from handlers import aws_lambda

    result = aws_lambda.handler(events, SimpleNamespace(aws_request_id="req-1"))
    assert result["errors"] == []
    return result["outputs"]


def lambda_http(config: pathlib.Path, events: list[dict]) -> list[dict]:
    from handlers import aws_lambda

    outputs = []
    for e in events:
        response = aws_lambda.handler({"version": "2.0", "routeKey": "$default", "headers": {},
                                       "requestContext": {"http": {"method": "POST"}}, "body": json.dumps(e),
                                       "isBase64Encoded": False}, None)
        assert response["statusCode"] == 200, response
        outputs.extend(json.loads(response["body"])["outputs"])
    return outputs


def cloud_function(config: pathlib.Path, events: list[dict]) -> list[dict]:
    """functions-framework's real server running the HTTP entry point."""
    from servers import start_function

    server, url = start_function(str(REPO / "handlers" / "gcp_functions.py"), "on_http",
                                 {"AGGLO_CONFIG": str(config)}, cwd=config.parent)
    try:
        request = urllib.request.Request(url, data=json.dumps(events).encode(), method="POST",
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=60) as resp:
            answer = json.loads(resp.read())
    finally:
        server.stop()
    assert answer["errors"] == []
    return answer["outputs"]


RUNNERS: dict[str, Runner] = {"agglo run": agglo_run, "lambda (direct)": lambda_direct, "lambda (http)": lambda_http,
                              "cloud function (http)": cloud_function}


def events_of(name: str) -> list[dict]:
    return [json.loads(line) for line in (REPO / "events" / name).read_text().splitlines() if line.strip()]


@pytest.mark.parametrize(("config", "events"), [("basic.json", "basic.jsonl"),
                                                ("traffic-bifurcate.json", "traffic-bifurcate.jsonl")])
def test_every_adapter_gives_the_same_outputs(config, events, tmp_path, monkeypatch):
    from handlers import aws_lambda

    results = {}
    for name, runner in RUNNERS.items():
        workdir = tmp_path / name.replace(" ", "_").replace("(", "").replace(")", "")
        workdir.mkdir()
        path = local_copy(config, workdir)
        monkeypatch.setenv("AGGLO_CONFIG", str(path))
        monkeypatch.chdir(workdir)
        aws_lambda.reset()
        results[name] = [without_uuids(e) for e in runner(path, events_of(events))]
    aws_lambda.reset()
    reference = results.pop("agglo run")
    assert len(reference) == len(events_of(events))
    for name, outputs in results.items():
        assert outputs == reference, f"{name} differs from agglo run"
