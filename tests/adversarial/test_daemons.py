"""Hostile and careless clients against ``agglo serve`` (stateless and durable) and the HTTP Cloud Function.

Each bad input is that request's (or that element's) clear error: the good records' outputs are those
of a clean run, no answer is a 500, no process prints a traceback, and nothing waits without bound.
"""

from __future__ import annotations

import contextlib
import http.client
import pathlib
import signal
import socket
import sqlite3
import subprocess
import threading
import time
from typing import Any

import orjson
import pytest
from builders import config, external
from e2e._servers import AGGLO, Server, free_port, request, run_agglo, write_config
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from servers import JsonHook

READ_TIMEOUT_S = 4  # long enough that a request blocked behind slow clients would show
GOOD = [{"who": "first", "n": 1}, {"who": "second", "n": 2}]
ANSWERS = {200, 400, 409, 413, 422}


def marking_config(tmp: pathlib.Path, hook_url: str | None = None) -> pathlib.Path:
    """Mark every event and tee it into a directory (and to ``hook_url`` when given)."""
    tees = [{"tee": {"name": "Out", "outputConnectorRef": "Files"}}]
    externals = [external("ExternalLocalFile", "Files", str(tmp / "tee"))]
    if hook_url:
        tees.append({"tee": {"name": "Web", "outputConnectorRef": "Web"}})
        externals.append(external("ExternalHttp", "Web", hook_url))
    return write_config(tmp / "marks.json", config(
        {"annotator": {"name": "Mark", "annotations": [{"fieldKey": "seen", "value": "yes"}]}}, *tees,
        externals=tuple(externals)))


def comparable(outputs: list[dict]) -> list[dict]:
    """Outputs without what names the record (its tee file), which differs from run to run by design."""
    return [{k: v for k, v in o.items() if not k.startswith("internal:tee")} for o in outputs]


def call(port: int, method: str, path: str, body: bytes | None = None, headers: dict | None = None,
         timeout: float = 30) -> tuple[int, dict[str, str], Any]:
    """One request; (status, headers, JSON answer)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request(method, path, body=body, headers={"Content-Type": "application/json", **(headers or {})})
        resp = conn.getresponse()
        return resp.status, dict(resp.getheaders()), orjson.loads(resp.read())
    finally:
        conn.close()


def no_traceback(server: Server) -> None:
    assert "Traceback" not in server.logs(), server.logs()


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> pathlib.Path:
    return tmp_path_factory.mktemp("hostile")


@pytest.fixture(scope="module")
def server(workdir):
    s = Server(marking_config(workdir), workdir, "--read-timeout", str(READ_TIMEOUT_S), log_name="hostile").start()
    yield s
    s.stop()
    no_traceback(s)


@pytest.fixture(scope="module")
def clean(server) -> list[dict]:
    status, _, answer = call(server.port, "POST", "/binge", orjson.dumps(GOOD))
    assert status == 200, answer
    return comparable(answer["outputs"])


def nested(depth: int) -> bytes:
    return b'{"a":' * depth + b"1" + b"}" * depth


JSON_VALUES = st.one_of(
    st.integers(1, 1100).map(nested),  # past the encoder's limit (255), past the parser's (1024)
    st.sampled_from([b"1e400", b"-1e400", b"123456789012345678901234567890", b"-0", b"1e-400", b"NaN",
                     b"18446744073709551616", b"-9223372036854775809", b'"\xff\xfe"', b'"\\ud800"',
                     b'{"a": 1, "a": 2}', b"[]", b"null", b"true", b'""']).map(lambda v: b'{"v": ' + v + b"}"),
    st.recursive(st.none() | st.booleans() | st.floats(allow_nan=False) | st.integers(-2**63, 2**64 - 1)
                 | st.text(max_size=20), lambda inner: st.lists(inner, max_size=4)
                 | st.dictionaries(st.text(max_size=8), inner, max_size=4), max_leaves=20).map(orjson.dumps),
    st.binary(max_size=200),
)


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(hostile=JSON_VALUES, key=st.none() | st.text(st.characters(codec="ascii"), min_size=1, max_size=12))
def test_a_hostile_element_is_its_own_error_and_the_good_ones_run_as_in_a_clean_run(server, clean, hostile,
                                                                                     key):
    headers = {"Idempotency-Key": f"hostile-{time.monotonic_ns()}-{key}"} if key and key.isprintable() else {}
    alone, _, answer = call(server.port, "POST", "/binge", hostile, headers)
    assert alone in ANSWERS, answer
    if alone != 200:
        assert answer.get("error") or answer.get("errors"), answer
    mixed = b"[" + orjson.dumps(GOOD[0]) + b"," + hostile + b"," + orjson.dumps(GOOD[1]) + b"]"
    status, _, answer = call(server.port, "POST", "/binge", mixed, headers and {"Idempotency-Key": "m-" +
                                                                                 headers["Idempotency-Key"]})
    if status == 400:  # not JSON as a whole: nothing ran
        assert "not valid JSON" in answer["error"]
        return
    assert status in (200, 422), answer
    first, bad, second = answer["results"]
    assert comparable(first["outputs"] + second["outputs"]) == clean
    assert first["errors"] == second["errors"] == []
    assert len(bad["errors"]) <= 1 and (bad["errors"] or status == 200)


def test_an_event_nested_past_the_encoder_limit_is_422_not_500(server, clean):
    for depth in range(245, 260):  # around the encoder's limit, where the answer's own levels count too
        for body in (nested(depth), b"[" + nested(depth) + b"]"):
            status, _, answer = call(server.port, "POST", "/binge", body)
            assert status == 200 or (status == 422 and "as JSON" in answer["errors"][0]["error"]), answer
    status, _, answer = call(server.port, "POST", "/binge", nested(300))
    assert status == 422 and "as JSON" in answer["errors"][0]["error"], answer
    status, _, answer = call(server.port, "POST", "/binge", nested(2000))
    assert status == 400 and "not valid JSON" in answer["error"], answer


def test_a_byte_order_mark_is_accepted(server, clean):
    status, _, answer = call(server.port, "POST", "/binge", b"\xef\xbb\xbf" + orjson.dumps(GOOD))
    assert status == 200 and comparable(answer["outputs"]) == clean


def test_an_idempotency_key_that_is_not_printable_or_too_long_is_400(server):
    status, _, answer = call(server.port, "POST", "/binge", b"{}", {"Idempotency-Key": "k" * 300})
    assert status == 400 and "Idempotency-Key" in answer["error"]


# --- slow clients -------------------------------------------------------------------------------------

def trickle(sock: socket.socket, data: bytes, stop: threading.Event) -> None:
    """Send ``data`` a byte every 0.2 s, as a slow or hostile client does, until the server hangs up."""
    for byte in data:
        if stop.wait(0.2):
            return
        try:
            sock.send(bytes([byte]))
        except OSError:
            return


def closed_by_server(sock: socket.socket, within_s: float) -> bytes:
    """What the server sent before closing ``sock``; fails if it is still open after ``within_s``."""
    sock.settimeout(within_s)
    received = b""
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        try:
            chunk = sock.recv(4096)
        except TimeoutError:
            break
        except ConnectionResetError:
            return received
        if not chunk:
            return received
        received += chunk
    raise AssertionError(f"the server kept a slow connection open for {within_s}s")


def test_idle_and_trickling_connections_cannot_block_healthz_or_other_clients(server, clean):
    stop = threading.Event()
    heads = [socket.create_connection(("127.0.0.1", server.port)) for _ in range(20)]
    bodies = [socket.create_connection(("127.0.0.1", server.port)) for _ in range(20)]
    idle = [socket.create_connection(("127.0.0.1", server.port)) for _ in range(20)]
    body = orjson.dumps(GOOD[0])
    for s in bodies:  # a complete head, then the body a byte at a time
        s.sendall(b"POST /binge HTTP/1.1\r\nHost: x\r\nContent-Length: " + str(len(body)).encode() + b"\r\n\r\n")
    threads = [threading.Thread(target=trickle, args=(s, b"POST /binge HTTP/1.1\r\nHost: x\r\n" * 10, stop))
               for s in heads] + [threading.Thread(target=trickle, args=(s, body, stop)) for s in bodies]
    for t in threads:
        t.start()
    try:
        started = time.monotonic()
        time.sleep(0.5)  # every slow client is connected and sending
        for _ in range(10):
            t0 = time.monotonic()
            assert request(server.port, "GET", "/healthz", timeout=5) == (200, {"status": "ok"})
            assert time.monotonic() - t0 < 1.5
        status, _, answer = call(server.port, "POST", "/binge", orjson.dumps(GOOD), timeout=5)
        assert status == 200 and comparable(answer["outputs"]) == clean
        limit = READ_TIMEOUT_S + 3 - (time.monotonic() - started)
        for s in idle + heads:
            assert closed_by_server(s, limit) == b""  # an idle or half-sent head: closed without a word
        for s in bodies:
            status_line = closed_by_server(s, limit).split(b"\r\n")[0]
            assert status_line == b"HTTP/1.1 408 Request Timeout"
    finally:
        stop.set()
        for t in threads:
            t.join(5)
        for s in heads + bodies + idle:
            s.close()
    assert request(server.port, "GET", "/healthz", timeout=5) == (200, {"status": "ok"})
    no_traceback(server)


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))


def test_huge_bodies_and_heads_are_refused_in_constant_memory(server, clean):
    before = rss_kib(server.proc.pid)
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as s:  # a 4 GiB claim: not read at all
        s.sendall(b"POST /binge HTTP/1.1\r\nHost: x\r\nContent-Length: 4294967296\r\n\r\n")
        assert closed_by_server(s, 5).startswith(b"HTTP/1.1 413 ")
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as s:  # 64 MiB chunked, no length
        s.sendall(b"POST /binge HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
        chunk = b"100000\r\n" + b"x" * 0x100000 + b"\r\n"
        try:
            for _ in range(64):
                s.sendall(chunk)
        except OSError:
            pass  # the server answered and hung up once the limit was passed
        assert closed_by_server(s, 5).startswith(b"HTTP/1.1 413 ")
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as s:  # a head of 100 KiB
        with contextlib.suppress(OSError):  # the server may hang up before the whole head is sent
            s.sendall(b"POST /binge HTTP/1.1\r\n" + b"X-Pad: " + b"y" * 100_000 + b"\r\n\r\n")
        assert closed_by_server(s, 5).startswith(b"HTTP/1.1 431 ")
    assert rss_kib(server.proc.pid) - before < 16 * 1024
    status, _, answer = call(server.port, "POST", "/binge", orjson.dumps(GOOD))
    assert status == 200 and comparable(answer["outputs"]) == clean


# --- starting up --------------------------------------------------------------------------------------

def one_clear_line(proc: subprocess.CompletedProcess, *words: str) -> str:
    err = proc.stderr.decode()
    assert proc.returncode == 2, err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert all(w in err for w in words), err
    assert b"serving" not in proc.stdout, proc.stdout
    return err


def test_a_busy_port_or_an_unusable_address_is_one_line_and_exit_2(tmp_path):
    cfg = marking_config(tmp_path)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        proc = run_agglo(["serve", "-c", str(cfg), "--port", str(port)], tmp_path, timeout=60)
        one_clear_line(proc, f"cannot listen on 127.0.0.1:{port}", "in use")
    proc = run_agglo(["serve", "-c", str(cfg), "--host", "203.0.113.7", "--port", str(free_port())], tmp_path,
                     timeout=60)
    one_clear_line(proc, "cannot listen on 203.0.113.7")
    proc = run_agglo(["serve", "-c", str(cfg), "--port", "70000"], tmp_path, timeout=60)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr.decode()
    (tmp_path / "a-file").write_text("")
    for unusable in (tmp_path / "a-file", tmp_path / "a-file" / "queue"):
        proc = run_agglo(["serve", "-c", str(cfg), "--durable", str(unusable), "--port", str(free_port())],
                         tmp_path, timeout=60)
        one_clear_line(proc, f"cannot use the queue directory {unusable}")
    garbage = tmp_path / "garbage"
    garbage.mkdir()
    (garbage / "queue.db").write_bytes(b"not a database at all" * 100)
    proc = run_agglo(["serve", "-c", str(cfg), "--durable", str(garbage), "--port", str(free_port())], tmp_path,
                     timeout=60)
    one_clear_line(proc, "not a database")


def test_two_durable_daemons_started_at_the_same_instant_on_one_directory_one_owns_it(tmp_path):
    cfg = marking_config(tmp_path)
    for round_ in range(10):
        queue_dir = tmp_path / f"queue-{round_}"
        ports = [free_port(), free_port()]
        procs = [subprocess.Popen([*AGGLO, "serve", "-c", str(cfg), "--durable", str(queue_dir), "--port", str(p)],
                                  cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                  start_new_session=True) for p in ports]
        try:
            deadline = time.monotonic() + 60
            while all(p.poll() is None for p in procs) and time.monotonic() < deadline:
                time.sleep(0.05)
            [loser] = [p for p in procs if p.poll() is not None]
            [owner] = [p for p in procs if p is not loser]
            _, err = loser.communicate(timeout=10)
            assert loser.returncode == 2, err
            assert err.decode().strip() == f"agglo: another agglo daemon is using the queue in {queue_dir}"
            owner_port = ports[procs.index(owner)]
            for _ in range(200):
                try:
                    if request(owner_port, "GET", "/healthz", timeout=2)[0] == 200:
                        break
                except OSError:
                    time.sleep(0.05)
            assert request(owner_port, "GET", "/healthz", timeout=2) == (200, {"status": "ok"})
        finally:
            for p in procs:
                if p.poll() is None:
                    p.send_signal(signal.SIGTERM)
                    _, err = p.communicate(timeout=15)
                    assert b"Traceback" not in err, err


# --- the durable daemon -------------------------------------------------------------------------------

def wait_for(predicate, timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError("timed out waiting")


def test_a_full_queue_is_503_with_retry_after_never_202(tmp_path):
    gate = threading.Event()

    def respond(hook, headers, body):
        gate.wait(30)  # the output hangs: the workers cannot drain the queue
        return 200, b"{}"

    hook = JsonHook(respond)
    server = Server(marking_config(tmp_path, hook.url), tmp_path, "--durable", str(tmp_path / "q"),
                    "--queue-max", "3", "--workers", "1", log_name="bounded").start()
    try:
        for n in range(3):
            assert call(server.port, "POST", "/binge", orjson.dumps({"n": n}))[0] == 202
        status, headers, answer = call(server.port, "POST", "/binge", orjson.dumps({"n": 3}))
        assert (status, headers["Retry-After"]) == (503, "1") and "bound is 3" in answer["error"], answer
        status, _, answer = call(server.port, "POST", "/binge", orjson.dumps([{"n": 3}, {"n": 4}]))
        assert status == 503, answer
        gate.set()
        wait_for(lambda: request(server.port, "GET", "/maintenance/queue")[1] == {
            "inflight": 0, "unprocessed": 0, "failed": 0})  # events in flight count against the bound too
        status, _, answer = call(server.port, "POST", "/binge", orjson.dumps({"n": 3}))
        assert status == 202, answer
        wait_for(lambda: len(hook.requests) == 4)
    finally:
        gate.set()
        server.stop()
        hook.close()
    assert sorted(b["n"] for _, b in hook.requests) == [0, 1, 2, 3]
    no_traceback(server)


def test_a_locked_queue_makes_healthz_503_and_posts_503_then_the_daemon_carries_on(tmp_path):
    server = Server(marking_config(tmp_path), tmp_path, "--durable", str(tmp_path / "q"), log_name="locked").start()
    try:
        assert call(server.port, "POST", "/binge", orjson.dumps(GOOD[0]))[0] == 202
        blocker = sqlite3.connect(tmp_path / "q" / "queue.db", isolation_level=None)
        blocker.execute("BEGIN EXCLUSIVE")
        try:
            status, headers, answer = call(server.port, "POST", "/binge", orjson.dumps(GOOD[1]))
            assert (status, headers["Retry-After"]) == (503, "1") and "locked" in answer["error"], answer
            wait_for(lambda: request(server.port, "GET", "/healthz")[0] == 503)
            assert "locked" in request(server.port, "GET", "/healthz")[1]["error"]
        finally:
            blocker.execute("COMMIT")
            blocker.close()
        wait_for(lambda: request(server.port, "GET", "/healthz") == (200, {"status": "ok"}))
        assert call(server.port, "POST", "/binge", orjson.dumps(GOOD[1]))[0] == 202
        wait_for(lambda: len(list((tmp_path / "tee").glob("*.json"))) == 2)
    finally:
        server.stop()
    assert "backing off" in server.logs()
    no_traceback(server)
    written = sorted((orjson.loads(p.read_bytes()) for p in (tmp_path / "tee").glob("*.json")), key=lambda e: e["n"])
    assert [{k: e[k] for k in ("who", "n", "seen")} for e in written] == [{**g, "seen": "yes"} for g in GOOD]


def test_failed_records_are_listed_logged_and_replayed_and_a_bad_element_is_refused_alone(tmp_path):
    refusing = [True]
    hook = JsonHook(lambda hook, headers, body: (400, b'"no"') if refusing[0] else (200, b"{}"))
    secret_url = hook.url + "?token=SECRET123"
    server = Server(marking_config(tmp_path, secret_url), tmp_path, "--durable", str(tmp_path / "q"),
                    log_name="failed").start()
    try:
        status, _, answer = call(server.port, "POST", "/binge", b"[" + orjson.dumps(GOOD[0]) + b"," + nested(300)
                                 + b"]", {"Idempotency-Key": "pair"})
        assert status == 202, answer
        ok, bad = answer["results"]
        assert ok == {"id": "http:pair#1", "queued": answer["queued"][0]}
        assert bad["id"] == "http:pair#2" and "as JSON" in bad["error"]
        wait_for(lambda: request(server.port, "GET", "/maintenance/queue")[1]["failed"] == 1)
        status, failed = request(server.port, "GET", "/maintenance/failed")
        [entry] = failed["failed"]
        assert entry["record"] == "http:pair#1" and entry["event"] == GOOD[0]
        assert entry["errors"][0]["process"] == "Web" and entry["errors"][0]["transient"] is False
        assert "SECRET123" not in orjson.dumps(failed).decode()
        # The same request again: the same records, nothing queued twice; another body under the key: 409.
        status, _, again = call(server.port, "POST", "/binge", b"[" + orjson.dumps(GOOD[0]) + b"," + nested(300)
                                + b"]", {"Idempotency-Key": "pair"})
        assert status == 202 and again["queued"] == answer["queued"]
        assert call(server.port, "POST", "/binge", orjson.dumps(GOOD[1]), {"Idempotency-Key": "pair"})[0] == 409
        refusing[0] = False
        status, replayed = request(server.port, "POST", f"/maintenance/failed/replay?id={entry['id']}")
        assert (status, replayed) == (200, {"replayed": 1})
        wait_for(lambda: request(server.port, "GET", "/maintenance/queue")[1] == {
            "inflight": 0, "unprocessed": 0, "failed": 0})
        assert request(server.port, "POST", "/maintenance/failed/replay") == (200, {"replayed": 0})
        assert request(server.port, "GET", "/maintenance/failed") == (200, {"failed": []})
        assert request(server.port, "POST", "/maintenance/failed/replay?id=x")[0] == 400
    finally:
        server.stop()
        hook.close()
    assert [b["who"] for _, b in hook.requests] == ["first", "first"]  # refused once, then delivered
    logs = server.logs()
    assert "queued event 1 (record http:pair#1) failed" in logs and "SECRET123" not in logs
    no_traceback(server)


# --- the HTTP Cloud Function ----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def cloud_function(tmp_path_factory):
    from agglo_core import compile_plan
    from handlers import gcp_functions
    from handlers.connectors import default_registry
    from handlers.runtime.driver import Runtime

    tmp = tmp_path_factory.mktemp("function")
    cfg = orjson.loads(marking_config(tmp).read_bytes())
    return gcp_functions.CloudFunctionApp(Runtime.build(compile_plan(cfg), default_registry()), None)


def function_post(app: Any, body: bytes, headers: dict | None = None) -> tuple[int, Any]:
    from werkzeug.test import EnvironBuilder
    from werkzeug.wrappers import Request

    env = EnvironBuilder(method="POST", data=body, headers={"Content-Type": "application/json", **(headers or {})})
    answer = app.http(Request(env.get_environ()))
    return answer[1], answer[0]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(hostile=JSON_VALUES)
def test_the_cloud_function_answers_every_hostile_body_and_runs_the_good_elements(cloud_function, hostile):
    status, answer = function_post(cloud_function, hostile)
    assert status in ANSWERS | {204}, answer
    clean_status, clean = function_post(cloud_function, orjson.dumps(GOOD))
    assert clean_status == 200
    status, answer = function_post(cloud_function, b"[" + orjson.dumps(GOOD[0]) + b"," + hostile + b","
                                   + orjson.dumps(GOOD[1]) + b"]")
    if status == 400:
        assert "not valid JSON" in answer["error"]
        return
    first, bad, second = answer["results"]
    assert comparable(first["outputs"] + second["outputs"]) == comparable(clean["outputs"])
    assert len(bad["errors"]) <= 1 and (bad["errors"] or status == 200)


def test_the_cloud_function_remembers_keys_within_the_instance(cloud_function):
    key = {"Idempotency-Key": f"fn-{time.monotonic_ns()}"}
    assert function_post(cloud_function, orjson.dumps(GOOD[0]), key)[0] == 200
    assert function_post(cloud_function, orjson.dumps(GOOD[0]), key)[0] == 200
    status, answer = function_post(cloud_function, orjson.dumps(GOOD[1]), key)
    assert status == 409 and key["Idempotency-Key"] in answer["error"]


# --- the identity rule itself -------------------------------------------------------------------------

@settings(max_examples=200, deadline=None)
@given(keys=st.lists(st.sampled_from("abcdefgh"), max_size=60), bodies=st.lists(st.binary(max_size=3), min_size=1,
                                                                                 max_size=3))
def test_the_key_memory_is_bounded_and_refuses_a_remembered_key_with_another_body(keys, bodies):
    from handlers.sources.posted import KeyConflict, KeyMemory

    memory, model = KeyMemory(capacity=3), {}
    for i, key in enumerate(keys):
        body = bodies[i % len(bodies)]
        remembered = model.get(key)
        if remembered is not None and remembered != body:
            with pytest.raises(KeyConflict):
                memory.claim(key, body)
            continue
        memory.claim(key, body)
        model.pop(key, None)
        model[key] = body
        while len(model) > 3:
            model.pop(next(iter(model)))
    assert len(memory._seen) <= 3


@settings(max_examples=100, deadline=None)
@given(events=st.lists(st.dictionaries(st.text(max_size=3), st.integers(-2**63, 2**63 - 1), max_size=2), min_size=1, max_size=5),
       array=st.booleans())
def test_without_a_key_every_post_and_every_element_is_a_new_record(events, array):
    from handlers.sources.posted import posted_events

    body = orjson.dumps(events if array else events[0])
    first, second = posted_events(body, None)[0], posted_events(body, None)[0]
    ids = [e.item.id for e in first + second]
    assert len(set(ids)) == len(ids) == 2 * len(first)
    keyed = [e.item.id for e in posted_events(body, "k")[0]]
    assert keyed == ([f"http:k#{n}" for n in range(1, len(events) + 1)] if array else ["http:k"])


def test_the_cloud_function_accepts_a_byte_order_mark(cloud_function):
    status, answer = function_post(cloud_function, b"\xef\xbb\xbf" + orjson.dumps(GOOD))
    assert status == 200 and len(answer["results"]) == 2


def test_the_durable_daemon_takes_no_event_while_no_worker_runs(tmp_path):
    import io

    from handlers.daemons.queue import DurableQueue
    from handlers.daemons.serve import ServeApp

    queue = DurableQueue(str(tmp_path / "q"))
    gone = threading.Thread(target=lambda: None)
    gone.start()
    gone.join()
    queue._workers.append(gone)
    app = ServeApp(None, "/binge", 1000, queue)  # type: ignore[arg-type]
    answers: list[str] = []
    body = orjson.dumps(GOOD[0])
    environ = {"REQUEST_METHOD": "POST", "PATH_INFO": "/binge", "CONTENT_LENGTH": str(len(body)),
               "wsgi.input": io.BytesIO(body)}
    data = b"".join(app(environ, lambda status, headers: answers.append(status)))
    assert answers == ["503 Service Unavailable"] and b"no queue worker is running" in data
    assert queue.counts()["unprocessed"] == 0
    queue.close()
