"""Ordinary mistakes on the command line are one clear line on stderr and exit status 2, never a traceback;
a bug still shows its traceback."""

from __future__ import annotations

import contextlib
import json
import os
import pathlib
import socket
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest
from builders import config, external, kv
from e2e._servers import AGGLO, run_agglo, write_config

from handlers import local
from handlers.runtime.config_source import MAX_CONFIG_BYTES, ConfigTooLarge, read_config_source

EVENTS = b"".join(b'{"n": %d}\n' % i for i in range(20000))


def one_line(proc: subprocess.CompletedProcess, *expected: str) -> str:
    """The one line ``proc`` wrote on stderr (exit status 2), holding every ``expected`` text."""
    assert proc.returncode == 2, proc.stderr
    text = proc.stderr.decode()
    assert "Traceback" not in text and text.count("\n") == 1, text
    assert text.startswith("agglo: ") and all(e in text for e in expected), text
    return text


@pytest.fixture
def plain(tmp_path: pathlib.Path) -> pathlib.Path:
    return write_config(tmp_path / "plain.json", config(
        {"annotator": {"name": "Mark", "annotations": [{"fieldKey": "seen", "value": "yes"}]}}))


def test_output_into_a_missing_directory(plain, tmp_path):
    one_line(run_agglo(["run", "-c", str(plain), "-o", "no/such/dir/out.jsonl"], tmp_path, stdin=EVENTS, timeout=60),
             "cannot write no/such/dir/out.jsonl: No such file or directory")


def test_a_closed_pipe_ends_quietly_like_any_unix_tool(plain, tmp_path):
    (tmp_path / "events.jsonl").write_bytes(EVENTS * 5)  # far more than a pipe holds
    proc = subprocess.Popen([*AGGLO, "run", "-c", str(plain), "-i", "events.jsonl"], cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout is not None
    assert json.loads(proc.stdout.readline())["n"] == 0  # what `| head -1` reads
    proc.stdout.close()
    assert proc.wait(timeout=120) == local.SIGPIPE_STATUS
    assert proc.stderr is not None and proc.stderr.read() == b""


@contextlib.contextmanager
def full_disk(tmp_path: pathlib.Path) -> Iterator[str]:
    """A file on a tiny tmpfs (root may mount one), or /dev/full where mounting is not allowed."""
    mount = tmp_path / "tiny"
    mount.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mount)],
                      capture_output=True, check=False).returncode != 0:
        yield "/dev/full"
        return
    try:
        yield str(mount / "out.jsonl")
    finally:
        subprocess.run(["umount", str(mount)], check=True)


def test_a_full_disk(plain, tmp_path):
    with full_disk(tmp_path) as path:
        one_line(run_agglo(["run", "-c", str(plain), "-o", path], tmp_path, stdin=EVENTS, timeout=60),
                 f"cannot write {path}: No space left on device")
    with open("/dev/full", "wb") as full:  # stdout on a full disk
        proc = subprocess.run([*AGGLO, "run", "-c", str(plain)], cwd=tmp_path, input=EVENTS, stdout=full,
                              stderr=subprocess.PIPE, timeout=60, check=False)
    one_line(proc, "cannot write <stdout>: No space left on device")


def test_a_port_in_use_or_a_host_not_here(plain, tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        started = time.monotonic()
        one_line(run_agglo(["serve", "-c", str(plain), "--port", str(port)], tmp_path, timeout=60),
                 f"cannot listen on 127.0.0.1:{port}: Address already in use")
        one_line(run_agglo(["ticker", "serve", "--state", "sqlite:t.db", "--port", str(port)], tmp_path, timeout=60),
                 "Address already in use")
        assert time.monotonic() - started < 30  # refused at once, not after the server's retries
    one_line(run_agglo(["serve", "-c", str(plain), "--host", "no-such-host.invalid", "--port", "0"], tmp_path,
                       timeout=60), "cannot listen on no-such-host.invalid:0")
    proc = run_agglo(["serve", "-c", str(plain), "--port", "70000"], tmp_path, timeout=60)
    assert proc.returncode == 2 and b"--port: must be from 0 to 65535, got 70000" in proc.stderr


@pytest.mark.parametrize("where", ["a directory", "under a file"])
def test_an_unusable_sqlite_path(where, tmp_path):
    (tmp_path / "a-dir").mkdir()
    (tmp_path / "a-file").write_text("")
    path = {"a directory": "a-dir", "under a file": "a-file/state.db"}[where]
    cfg = write_config(tmp_path / "cfg.json", config(
        {"aggregator": {"name": "Sum", "stateStore": "State", "aggregation": {"key": "n", "aggregationType": "AggSum"}}},
        externals=(kv(cs=f"sqlite:{tmp_path / path}"),)))
    one_line(run_agglo(["run", "-c", str(cfg)], tmp_path, stdin=EVENTS, timeout=60),
             "external system 'State' cannot be opened")
    one_line(run_agglo(["ticker", "serve", "--state", f"sqlite:{tmp_path / path}", "--port", "0"], tmp_path,
                       timeout=60))


def test_a_missing_optional_extra_names_the_extra(tmp_path):
    (tmp_path / "template.yaml").write_text("Resources: {}\n")
    program = ("import sys; sys.modules['yaml'] = None\n"
               "from handlers.local import main\n"
               "sys.exit(main(['invoke', 'Fn', '-t', 'template.yaml']))")
    proc = subprocess.run([sys.executable, "-c", program], cwd=tmp_path, capture_output=True, timeout=60,
                          check=False, env={**os.environ, "PYTHONPATH": str(pathlib.Path(local.__file__).parents[1])})
    one_line(proc, "needs the yaml package", "pip install 'agglo[authoring]'")


def test_an_absurdly_large_config_is_refused_unread(tmp_path, monkeypatch):
    big = tmp_path / "big.json"
    with open(big, "wb") as f:  # sparse: large without writing it
        f.truncate(MAX_CONFIG_BYTES + 1)
    for args in (["run", "-c", "big.json"], ["validate", "-c", "big.json"], ["lint", "big.json"],
                 ["graph", "-c", "big.json"], ["fmt", "-c", "big.json"]):
        one_line(run_agglo(args, tmp_path, timeout=60), "config big.json is larger than 16 MiB")
    (tmp_path / "big.agglo-test.yaml").write_text("config: big.json\ntests:\n  - name: t\n    events: [{}]\n")
    proc = run_agglo(["test", "big.agglo-test.yaml"], tmp_path, timeout=60)
    assert proc.returncode != 0 and b"Traceback" not in proc.stderr
    assert b"config big.json is larger than 16 MiB" in proc.stdout + proc.stderr
    monkeypatch.setenv("AGGLO_CONFIG", str(big))
    with pytest.raises(ConfigTooLarge, match="larger than 16 MiB"):
        read_config_source()


def test_a_missing_cloud_table_is_a_record_error(aws, monkeypatch, tmp_path):
    from handlers import aws_lambda

    cfg = config({"aggregator": {"name": "Sum", "stateStore": "State",
                                 "aggregation": {"key": "n", "aggregationType": "AggSum"}}},
                 {"annotator": {"name": "Mark", "annotations": [{"fieldKey": "seen", "value": "yes"}]}},
                 externals=(external("ExternalKVStore", "State", "dynamo:tableName=absent"),))
    monkeypatch.setenv("AGGLO_CONFIG", str(write_config(tmp_path / "cfg.json", cfg)))
    aws_lambda.reset()
    result = aws_lambda.handler([{"n": 1}, {"n": 2}], None)
    assert result["outputs"] == []
    assert [e["process"] for e in result["errors"]] == ["Sum", "Sum"]
    assert all("could not update state in 'State': ResourceNotFoundException" in e["error"] for e in result["errors"])


def test_a_bug_keeps_its_traceback(monkeypatch):
    def broken(args: object) -> int:
        raise RuntimeError("a bug")

    monkeypatch.setattr(local, "_cmd_validate", broken)
    with pytest.raises(RuntimeError, match="a bug"):
        local.main(["validate", "-c", "any.json"])
