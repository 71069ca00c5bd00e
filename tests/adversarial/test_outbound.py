"""Outbound calls under attack: hostile regexes, HTTP endpoints that redirect, stall or trickle, executables
swapped under the allow-list, spawn floods, and secrets in connection strings.

Each bad input is one record's clear error (or, for a regex, just a linear-time answer); every other record
gives exactly what a clean run gives; nothing leaves a traceback, hangs or shows a secret.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import pathlib
import re
import socket
import stat
import sys
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from builders import cmp, config, external, lit, var, without_uuids
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agglo_core import EffectFailed, Exec, Put, Record, compile_plan
from agglo_core import regex as regex_engine
from agglo_core.connstr import redact_text
from agglo_core.lint import REGEX_NOT_RE2
from handlers.authoring.lint import lint_source
from handlers.connectors import default_registry
from handlers.connectors.catalog import CATALOG, redact
from handlers.connectors.http import DEADLINE_OPTION, MAX_REDIRECTS, HttpTarget
from handlers.connectors.spec import ConnectorSpec, Option
from handlers.runtime.driver import Runtime
from handlers.runtime.execs import ExecRunner

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "e2e"))
from _servers import json_lines, run_agglo, write_config  # noqa: E402

EVIL = "(a+)+$"
EVIL_INPUT = "a" * 40 + "b"  # Python's re backtracks 2**40 times on this


def run_cli(args: list[str], cwd: pathlib.Path, stdin: bytes, env: dict[str, str] | None = None,
            timeout: float = 60) -> tuple[int, list[Any], list[Any], str]:
    """``agglo ARGS``: (status, outputs, errors, stderr), asserting no traceback."""
    proc = run_agglo(args, cwd, stdin=stdin, env=env, timeout=timeout)
    stderr = proc.stderr.decode()
    assert "Traceback" not in stderr, stderr
    errors = [e for e in json_lines("\n".join(line for line in stderr.splitlines() if line.startswith("{")))]
    return proc.returncode, json_lines(proc.stdout), errors, stderr


def lines(*events: dict) -> bytes:
    return b"".join(json.dumps(e).encode() + b"\n" for e in events)


# --- regexes: RE2, linear time ----------------------------------------------------------------------------


def test_a_catastrophic_pattern_runs_in_linear_time_in_every_place_a_config_puts_one(tmp_path):
    """Filter keys (pipeline K), TransformMapRegex, an =~ literal and a pattern the event supplies (pipeline P)."""
    copy = {"transformationType": "TransformCopy"}
    cfg = config(
        {"transformer": {"name": "Rewrite", "specs": [
            {"sourceField": "s", "targetField": "s", "transformation": copy},
            {"sourceField": "p", "targetField": "p", "transformation": copy},
            {"sourceField": "s", "targetField": "s2", "transformation": {
                "transformationType": "TransformMapRegex", "mapRegexArgs": {"regex": EVIL, "replace": "<$1>"}}}]}},
        {"annotator": {"name": "Mark", "annotations": [
            {"fieldKey": "literal", "value": "hit", "condition": cmp(var("s"), "RegexMatch", lit(EVIL))},
            {"fieldKey": "dynamic", "value": "hit", "condition": cmp(var("s"), "RegexMatch", var("p"))}]}},
        {"filter": {"name": "Drop", "regex": EVIL, "keepMatched": False}},
        order=["Rewrite", "Mark"],
        extra_pipelines=({"name": "K", "processes": [{"name": "Drop"}]},))
    path = write_config(tmp_path / "evil.json", cfg)
    good = [{"s": "aaa", "p": "^a+$"}, {"s": "xyz", "p": "y"}]
    hostile = {"s": EVIL_INPUT, "p": EVIL, EVIL_INPUT: 1, "aaaa": 2}
    clean = run_cli(["run", "-c", str(path)], tmp_path, lines(*good))
    started = time.monotonic()
    status, outputs, errors, _ = run_cli(["run", "-c", str(path)], tmp_path, lines(good[0], hostile, good[1]),
                                         timeout=30)
    assert time.monotonic() - started < 20
    assert status == 0 and errors == [] and clean[0] == 0
    assert outputs[:2] + outputs[4:] == clean[1]
    assert clean[1][0]["s2"] == "<aaa>" and clean[1][0]["literal"] == clean[1][0]["dynamic"] == "hit"
    # RE2 answers what Go's regexp answers, at once: no match, so nothing is marked, rewritten or dropped
    rewritten, kept = outputs[2], outputs[3]
    assert rewritten["s2"] == EVIL_INPUT and "literal" not in rewritten and "dynamic" not in rewritten
    assert kept[EVIL_INPUT] == 1 and "aaaa" not in kept


@pytest.mark.parametrize(("pattern", "why"), [
    ("(a)\\1", "backreferences"), ("(?=a)b", "lookaround"), ("(?<=a)b", "lookaround"), ("x\\Z", "\\Z"),
])
def test_validate_refuses_and_lint_names_patterns_re2_cannot_express(tmp_path, pattern, why):
    cfg = config({"annotator": {"name": "Mark", "annotations": [
        {"fieldKey": "k", "value": "v", "condition": cmp(var("s"), "RegexMatch", lit(pattern))}]}})
    path = write_config(tmp_path / "re2.json", cfg)
    proc = run_agglo(["validate", "-c", str(path)], tmp_path, timeout=60)
    out = proc.stdout.decode()
    assert proc.returncode == 1 and "Traceback" not in proc.stderr.decode()
    assert "processDefinitions[0].annotator.annotations[0].condition.expression.comparator.rhs.literal" in out
    assert "cannot be expressed in RE2" in out and why in out
    [finding] = lint_source(json.dumps(cfg).encode(), frozenset())
    assert (finding.rule, finding.level) == (REGEX_NOT_RE2, "error")
    assert finding.path.endswith("comparator.rhs.literal")
    assert b"re2.cc" not in proc.stderr  # RE2 never prints its own complaint


# Patterns both dialects read the same way: literals, classes, groups, alternation, repetition that cannot
# match the empty string (where Go's and Python's sub differ on purpose).
ATOMS = st.sampled_from(["a", "b", "ab", "[ab]", "[^a]", "\\d", ".", "é", "(a|b)", "(?:ba)"])
PATTERNS = st.lists(st.tuples(ATOMS, st.sampled_from(["", "+", "?", "{1,2}"])), min_size=1, max_size=4).map(
    lambda parts: "".join(a + q for a, q in parts)).filter(lambda p: not re.fullmatch(p, ""))
TEXTS = st.text(alphabet="abé1 x", max_size=30)


@settings(max_examples=300, deadline=None)
@given(pattern=PATTERNS, text=TEXTS)
def test_re2_agrees_with_python_where_the_dialects_agree(pattern, text):
    compiled = regex_engine.compile(pattern)
    expected = re.search(pattern, text)
    assert compiled.matches(text) is (expected is not None)
    assert compiled.sub("<\\0$>", text) == re.sub(pattern, lambda m: "<\\0$>", text)
    assert compiled.sub(lambda m: f"[{m.group(0)}]", text) == re.sub(pattern, lambda m: f"[{m.group(0)}]", text)


@pytest.mark.parametrize(("regex", "replace", "text", "expected"), [
    ("(?P<word>\\w+)@(\\w+)", "${word} at $2", "me@host", "me at host"),
    ("(a)(b)?", "[$1|$2]", "ac", "[a|]c"),
    ("x", "$$1", "axb", "a$1b"),
    ("é", "\\e", "déjà", "d\\ejà"),
    ("a*", "-", "baaac", "-b-c-"),  # Go: an empty match right after a match is skipped
])
def test_go_replacements_still_work(regex, replace, text, expected):
    cfg = config({"transformer": {"name": "T", "specs": [{"sourceField": "s", "targetField": "s", "transformation": {
        "transformationType": "TransformMapRegex", "mapRegexArgs": {"regex": regex, "replace": replace}}}]}})
    [outcome] = Runtime.build(compile_plan(cfg), default_registry()).process([Record("r", {"s": text})])
    assert outcome.errors == [] and outcome.outputs[0][1]["s"] == expected


# --- the HTTP tee -----------------------------------------------------------------------------------------


class Endpoint:
    """A real HTTP server on 127.0.0.1: ``answer(handler, path, body)`` sends what it likes."""

    def __init__(self, answer: Callable[[BaseHTTPRequestHandler, str, bytes], None]) -> None:
        self.requests: list[tuple[str, str, dict[str, str], bytes]] = []
        endpoint = self

        class Handler(BaseHTTPRequestHandler):
            def handle_one(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                endpoint.requests.append((self.command, self.path, dict(self.headers), body))
                answer(self, self.path, body)

            do_POST = do_GET = handle_one  # noqa: N815 - http.server's names

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def endpoints() -> Iterator[Callable[..., Endpoint]]:
    made: list[Endpoint] = []

    def make(answer: Callable[[BaseHTTPRequestHandler, str, bytes], None]) -> Endpoint:
        made.append(Endpoint(answer))
        return made[-1]

    yield make
    for e in made:
        e.close()


def reply(handler: BaseHTTPRequestHandler, status: int, body: bytes = b"{}", **headers: str) -> None:
    handler.send_response(status)
    for name, value in headers.items():
        handler.send_header(name, value)
    handler.send_header("Content-Length", str(len(body)))
    handler.end_headers()
    handler.wfile.write(body)


def put(n: int = 1) -> list[Put]:
    return [Put("Web", f"key-{i}", {"n": i}) for i in range(n)]


def test_a_307_to_the_same_origin_is_posted_again_with_the_same_body(endpoints):
    def answer(h: BaseHTTPRequestHandler, path: str, body: bytes) -> None:
        if path == "/old":
            reply(h, 307, Location="/new?x=1")
        else:
            reply(h, 200, b'{"at": "new"}')

    web = endpoints(answer)
    [result] = HttpTarget(web.url + "/old").perform(put())
    assert result == {"at": "new"}
    assert [(m, p) for m, p, _, _ in web.requests] == [("POST", "/old"), ("POST", "/new?x=1")]
    assert web.requests[0][3] == web.requests[1][3] == b'{"n":0}'


@pytest.mark.parametrize("status", [301, 302, 303])
def test_a_redirect_that_would_turn_the_post_into_a_get_fails_the_record_naming_it(endpoints, status):
    web = endpoints(lambda h, path, body: reply(h, status, Location="/elsewhere"))
    [result] = HttpTarget(web.url + "/hook").perform(put())
    assert isinstance(result, EffectFailed) and not result.transient
    assert f"answered {status}" in result.message and "/elsewhere" in result.message
    assert [m for m, _, _, _ in web.requests] == ["POST"]  # nothing was sent as a GET


def test_a_307_to_another_origin_or_a_loop_fails_the_record(endpoints):
    other = endpoints(lambda h, path, body: reply(h, 200))
    away = endpoints(lambda h, path, body: reply(h, 308, Location=other.url + "/x"))
    [result] = HttpTarget(away.url + "/hook").perform(put())
    assert isinstance(result, EffectFailed) and not result.transient and "same origin" in result.message
    assert other.requests == []
    loop = endpoints(lambda h, path, body: reply(h, 307, Location="/again"))
    [looped] = HttpTarget(loop.url + "/hook").perform(put())
    assert isinstance(looped, EffectFailed) and not looped.transient and "redirects" in looped.message
    assert len(loop.requests) == MAX_REDIRECTS + 1


def stalling_server(trickle_every_s: float | None) -> tuple[int, Callable[[], None]]:
    """A raw socket server that reads each request and then never answers, or trickles one byte at a time."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    stop = threading.Event()

    def serve(conn: socket.socket) -> None:
        with conn:
            conn.recv(65536)
            if trickle_every_s is not None:
                head = b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n"
                for byte in head + b"x" * 100000:
                    if stop.is_set():
                        return
                    try:
                        conn.send(bytes([byte]))
                    except OSError:
                        return
                    time.sleep(trickle_every_s)
            stop.wait(60)

    def accept() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            threading.Thread(target=serve, args=(conn,), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()

    def close() -> None:
        stop.set()
        listener.close()

    return listener.getsockname()[1], close


@pytest.mark.parametrize("trickle", [None, 0.05], ids=["silent", "trickling"])
def test_a_stalled_endpoint_costs_one_deadline_per_record_with_bounded_concurrency(trickle):
    port, close = stalling_server(trickle)
    try:
        target = HttpTarget(f"http://127.0.0.1:{port}/hook?{DEADLINE_OPTION}=0.5&keep=1", deadline_s=0.5)
        started = time.monotonic()
        results = target.perform(put(20))
        elapsed = time.monotonic() - started
    finally:
        close()
    assert all(isinstance(r, EffectFailed) and r.transient and "deadline of 0.5s" in r.message for r in results)
    # 20 records, 16 at once: two rounds of one deadline (1 s), not 20 deadlines (10 s), nor endless trickling
    assert elapsed < 5, elapsed


def test_the_deadline_comes_from_the_connection_string_and_is_not_sent(endpoints, tmp_path):
    web = endpoints(lambda h, path, body: reply(h, 200))
    cfg = config({"tee": {"name": "Send", "outputConnectorRef": "Web"}},
                 externals=(external("ExternalHttp", "Web", f"{web.url}/hook?{DEADLINE_OPTION}=2.5&a=b"),))
    runtime = Runtime.build(compile_plan(cfg), default_registry())
    [outcome] = runtime.process([Record("r", {"n": 1})])
    assert outcome.errors == [] and runtime.connectors["Web"].deadline_s == 2.5
    assert [p for _, p, _, _ in web.requests] == ["/hook?a=b"]
    bad = write_config(tmp_path / "bad.json", config(
        {"tee": {"name": "Send", "outputConnectorRef": "Web"}},
        externals=(external("ExternalHttp", "Web", f"{web.url}/hook?{DEADLINE_OPTION}=0"),)))
    proc = run_agglo(["validate", "-c", str(bad)], tmp_path, timeout=60)
    assert proc.returncode == 1 and "aggloDeadline must be a positive number of seconds" in proc.stdout.decode()


def test_userinfo_is_basic_auth_and_is_never_shown(endpoints):
    web = endpoints(lambda h, path, body: reply(h, 503, b"busy"))
    target = HttpTarget(f"http://al%40ice:s3cr%3At@127.0.0.1:{web.port}/hook")
    [result] = target.perform(put())
    [(_, path, headers, _)] = web.requests
    assert headers["Authorization"] == "Basic " + base64.b64encode(b"al@ice:s3cr:t").decode()
    assert path == "/hook"
    assert isinstance(result, EffectFailed) and "s3cr" not in result.message and "s3cr" not in repr(target)
    assert "s3cr" not in target.describe()


def test_agglo_run_with_a_stalling_endpoint_fails_only_the_records_it_stalls(endpoints, tmp_path):
    def answer(h: BaseHTTPRequestHandler, path: str, body: bytes) -> None:
        if json.loads(body).get("stall"):
            time.sleep(3)
        reply(h, 200, b'{"ok": true}')

    web = endpoints(answer)
    cfg = write_config(tmp_path / "tee.json", config(
        {"tee": {"name": "Send", "outputConnectorRef": "Web"}},
        externals=(external("ExternalHttp", "Web", f"{web.url}/hook?{DEADLINE_OPTION}=0.5"),)))
    good = [{"n": 1}, {"n": 2}, {"n": 3}]
    clean = run_cli(["run", "-c", str(cfg)], tmp_path, lines(*good))
    started = time.monotonic()
    status, outputs, errors, _ = run_cli(["run", "-c", str(cfg)], tmp_path,
                                         lines(*good, {"n": 9, "stall": True}), timeout=60)
    assert time.monotonic() - started < 30
    assert status == 1 and clean[0] == 0
    assert [without_uuids(o) for o in outputs] == [without_uuids(o) for o in clean[1]]  # stdin: new data each run
    [error] = errors
    assert error["line"] == 4 and "deadline" in error["error"]


# --- executables ------------------------------------------------------------------------------------------


def script(path: pathlib.Path, body: str) -> pathlib.Path:
    path.write_text(f"#!/bin/sh\n{body}\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return path


def test_a_symlink_swapped_between_the_check_and_the_run_cannot_redirect_it(tmp_path):
    good = script(tmp_path / "good.sh", "echo '\"good\"'")
    evil = script(tmp_path / "evil.sh", "echo '\"evil\"'")
    link = tmp_path / "tool"
    link.symlink_to(good)
    runner = ExecRunner(frozenset({str(good.resolve())}), timeout_s=5)
    result: list[Any] = []
    # The delay runs after the check: the link is swapped to the evil script while it sleeps
    worker = threading.Thread(target=lambda: result.append(runner.run(Exec(str(link), (), {}, delay_ms=600))))
    worker.start()
    time.sleep(0.2)
    link.unlink()
    link.symlink_to(evil)
    worker.join(10)
    assert result == ["good"]
    # and afterwards the link names a file that is not allowed: refused, permanently
    [refused] = runner.perform([Exec(str(link), (), {})])
    assert isinstance(refused, EffectFailed) and "not allowed" in refused.message and not refused.transient


def test_a_bare_name_runs_the_checked_file_never_one_found_in_path(tmp_path, monkeypatch):
    here = tmp_path / "work"
    bin_dir = tmp_path / "bin"
    here.mkdir()
    bin_dir.mkdir()
    script(here / "tool", "echo '\"checked\"'")
    script(bin_dir / "tool", "echo '\"from PATH\"'")
    monkeypatch.chdir(here)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    runner = ExecRunner(frozenset({str((here / "tool").resolve())}), timeout_s=5)
    assert runner.perform([Exec("tool", (), {}), Exec("./tool", (), {})]) == ["checked", "checked"]


def test_a_huge_delay_is_capped_at_the_exec_timeout(tmp_path):
    exe = script(tmp_path / "ok.sh", "echo 1")
    runner = ExecRunner(frozenset({str(exe.resolve())}), timeout_s=0.3)
    started = time.monotonic()
    assert runner.run(Exec(str(exe), (), {}, delay_ms=10**12)) == 1
    assert time.monotonic() - started < 3


def test_asynchronous_spawns_are_bounded_and_drained(tmp_path):
    log_dir = tmp_path / "log"
    log_dir.mkdir()
    # each spawn records when it started and ended, by the nanosecond, in its own file
    exe = script(tmp_path / "slow.sh", f'f={log_dir}/$$; date +%s%N > $f; sleep 0.3; date +%s%N >> $f')
    runner = ExecRunner(frozenset({str(exe.resolve())}), timeout_s=5, max_async=2)
    spawns = [Exec(str(exe), (), {"i": i}, wait=False) for i in range(6)]
    assert runner.perform(spawns) == [None] * 6
    assert runner.drain(10) == 0
    spans = [tuple(int(x) for x in f.read_text().split()) for f in log_dir.iterdir()]
    assert len(spans) == 6 and all(len(s) == 2 for s in spans)
    for start, _ in spans:  # never more than two running at once
        assert sum(1 for s, e in spans if s <= start < e) <= 2


def test_agglo_run_waits_for_asynchronous_spawns_and_reports_the_failed_one(tmp_path):
    marks = tmp_path / "marks"
    marks.mkdir()
    exe = script(tmp_path / "late.sh",
                 f'read line; sleep 0.5; case "$line" in *bad*) echo nope >&2; exit 4;; esac; '
                 f'touch {marks}/$$')
    cfg = write_config(tmp_path / "spawn.json", config(
        {"spawner": {"name": "Spawn", "doSync": False, "job": {"runnable": {"pathToExec": str(exe)}}}}))
    good = [{"n": 1}, {"n": 2}]
    clean = run_cli(["run", "-c", str(cfg), "--allow-exec", str(exe)], tmp_path, lines(*good))
    assert clean[0] == 0 and len(list(marks.iterdir())) == 2  # none lost at exit
    status, outputs, _, stderr = run_cli(["run", "-c", str(cfg), "--allow-exec", str(exe)], tmp_path,
                                         lines(good[0], {"bad": True}, good[1]), timeout=60)
    assert status == 1 and outputs[0] == clean[1][0] and outputs[2] == clean[1][1]
    assert len(list(marks.iterdir())) == 4
    [failure] = [line for line in stderr.splitlines() if "asynchronous spawn failed" in line]
    assert "exited with status 4" in failure and "nope" in failure


# --- secrets ----------------------------------------------------------------------------------------------

SECRET = st.text("abcdefghijkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789", min_size=12, max_size=24).map(
    lambda s: "Sx9" + s)


def secret_places(spec: ConnectorSpec, secret: str, scheme: str) -> list[str]:
    """Connection strings of ``spec`` that carry ``secret`` where a secret goes."""
    url_places = [f"https://user:{secret}@example.com/p", f"https://{secret}@example.com/p",
                  f"https://example.com/p?token={secret}", f"https://example.com/p?api-key={secret}",
                  f"https://example.com/p?sig={secret}&x=1", f"https://hooks.slack.com/services/T0/B0/{secret}",
                  f"https://discord.com/api/webhooks/123/{secret}"]
    if spec.form == "url":
        base = f"{scheme}://user:{secret}@example.com:1/0"
        return [base, f"{scheme}://{secret}@example.com/0", *(f"{scheme}://" + u.split("://", 1)[1]
                                                              for u in url_places)]
    if spec.form == "options":
        url_option = next((o.name for o in spec.options if o.name in ("endpoint", "queueUrl")), None)
        places = [f"{scheme}:password={secret}", f"{scheme}:apikey={secret}"]
        if url_option:
            places += [f"{scheme}:{url_option}={u}" for u in url_places]
        return places
    return [f"{scheme}:https://user:{secret}@example.com/x" if scheme else f"https://user:{secret}@example.com/x"]


def graph_of(cs: str, external_type: str) -> str:
    """``agglo graph``'s text for a config with one tee to ``cs``."""
    from handlers.authoring.graph import build, mermaid

    cfg = config({"tee": {"name": "T", "outputConnectorRef": "Out"}},
                 externals=(external(external_type, "Out", cs),))
    return mermaid(build(compile_plan(cfg).config))


@pytest.mark.parametrize("spec", CATALOG, ids=lambda s: f"{s.name}-{s.external_types[0]}")
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(secret=SECRET)
def test_no_connector_shows_a_secret(spec: ConnectorSpec, secret: str) -> None:
    for scheme in spec.schemes:
        for cs in secret_places(spec, secret, scheme):
            shown = redact(cs)
            assert secret not in shown, (cs, shown)
            assert all(secret not in p for p in spec.problems(cs)), cs
            assert secret not in graph_of(cs, spec.external_types[0]), cs


def test_a_secret_option_is_hidden_and_its_bad_value_never_echoed():
    spec = ConnectorSpec("X", ("x",), ("ExternalKVStore",), frozenset(), None, "", lambda ext, opts: None,
                         options=(Option("name"), Option("pin", "int", secret=True)))
    assert redact("x:name=n,pin=Zq81", (spec,)) == "x:name=n,pin=***"
    [problem] = spec.problems("x:name=n,pin=Zq81")
    assert "Zq81" not in problem and "pin must be an integer" in problem


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(password=SECRET, token=SECRET)
def test_secrets_from_the_environment_reach_no_error_log_output_or_dead_letter(endpoints_once, caplog, monkeypatch,
                                                                               password, token):
    web = endpoints_once
    monkeypatch.setenv("HOOK_PASSWORD", password)
    monkeypatch.setenv("HOOK_TOKEN", token)
    template = f"http://agglo:${{HOOK_PASSWORD}}@127.0.0.1:{web.port}/hook?token=${{HOOK_TOKEN}}&{DEADLINE_OPTION}=2"
    cfg = config({"tee": {"name": "Send", "outputConnectorRef": "Web"}},
                 externals=(external("ExternalHttp", "Web", template), external("ExternalObjectStore", "Dead",
                                                                              "mem:dead")))
    runtime = Runtime.build(compile_plan(cfg, redact=redact), default_registry())
    with caplog.at_level(logging.DEBUG):
        outcomes = runtime.process([Record("ok", {"n": 1}), Record("bad", {"n": 2, "fail": True})])
        assert runtime.dead_letter("Dead", [outcomes[1]]) == []
    [error] = outcomes[1].errors
    dead = json.dumps([v for _, v in runtime.connectors["Dead"].scan()])
    shown = " ".join([error.message, caplog.text, dead, json.dumps(outcomes[0].outputs),
                      runtime.connectors["Web"].describe(), repr(runtime.connectors["Web"])])
    assert outcomes[0].errors == [] and "answered 401" in error.message
    assert password not in shown and token not in shown
    assert "${HOOK_PASSWORD}" in runtime.connectors["Web"].describe()


@pytest.fixture(scope="module")
def endpoints_once() -> Iterator[Endpoint]:
    def answer(h: BaseHTTPRequestHandler, path: str, body: bytes) -> None:
        if json.loads(body).get("fail"):  # the endpoint echoes the URL it was sent, token and all
            reply(h, 401, f"denied http://127.0.0.1{path}".encode())
        else:
            reply(h, 200)

    web = Endpoint(answer)
    yield web
    web.close()


def test_library_errors_that_quote_a_url_are_redacted():
    text = 'Could not connect to the endpoint URL: "http://key:Zq9secret@localhost:1/?X-Amz-Signature=abc123"'
    shown = redact_text(text)
    assert "Zq9secret" not in shown and "abc123" not in shown and "localhost:1" in shown


def test_an_unreachable_ticker_is_named_without_its_credentials():
    from agglo_core.effects import TickerCall
    from handlers.connectors.ticker import TickerClient

    [result] = TickerClient().perform([TickerCall("http://op:Zq9hunter2@127.0.0.1:9", "GET", "/tick")])
    assert isinstance(result, EffectFailed) and "unreachable" in result.message
    assert "Zq9hunter2" not in result.message and "127.0.0.1:9" in result.message


@settings(max_examples=200, deadline=None)
@given(text=st.text(), pattern=st.sampled_from([".", "(.)", "\\w+", "$", "^", "a*", "(?P<x>[^a])", EVIL]))
def test_any_event_text_is_matched_and_replaced_without_error(text, pattern):
    """Lone surrogates, astral characters, empty strings: every str an event can hold."""
    compiled = regex_engine.compile(pattern)
    replaced = compiled.sub(lambda m: f"<{m.group(compiled.groups and 1) or ''}>", text)
    assert isinstance(replaced, str) and compiled.matches(text) is (compiled.search(text) is not None)
    if not compiled.matches(text):
        assert replaced == text


def test_a_binary_runs_from_the_file_that_was_checked():
    cat = os.path.realpath("/bin/cat")
    runner = ExecRunner(frozenset({cat}), timeout_s=5)
    assert runner.run(Exec("/bin/cat", (), {"a": [1, "é"]})) == {"a": [1, "é"]}
