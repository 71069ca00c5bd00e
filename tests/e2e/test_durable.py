"""``agglo serve --durable``: every event acknowledged with 202 is processed, even across a SIGKILL."""

from __future__ import annotations

import http.client
import json
import pathlib
import re
import signal
import sqlite3
import threading
import time

import orjson
import pytest
from _servers import Server, post_json, request, write_config
from builders import config, external, kv

N = 2000
KILL_AFTER = 700


def durable_config(tmp: pathlib.Path) -> pathlib.Path:
    """Count, sum and take the maximum of events in SQLite and tee each one into its own file."""
    def agg(name: str, kind: str) -> dict:
        return {"aggregator": {"name": name, "stateStore": "State", "forwardState": True,
                               "aggregation": {"key": "n", "aggregationType": kind}}}

    return write_config(tmp / "durable.json", config(
        agg("Count", "AggCount"), agg("Sum", "AggSum"), agg("Max", "AggMax"),
        {"tee": {"name": "Out", "outputConnectorRef": "Files"}},
        externals=(kv("State", f"sqlite:{tmp / 'state.db'}"),
                   external("ExternalLocalFile", "Files", str(tmp / "tee")))))


class Client(threading.Thread):
    """Posts events 0..N-1 in order on a keep-alive connection; re-sends an event (under the same
    ``Idempotency-Key``) until it gets a 202."""

    def __init__(self, port: int) -> None:
        super().__init__(name="durable-client", daemon=True)
        self.port = port
        self.acked = 0
        self.resends = 0
        self.unexpected: list[tuple[int, int, bytes]] = []
        self.halfway = threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self._post_all()
        except BaseException as e:  # surfaced by the test
            self.error = e

    def _post_all(self) -> None:
        conn: http.client.HTTPConnection | None = None
        give_up = time.monotonic() + 120
        for n in range(N):
            body = orjson.dumps({"n": n})
            while True:
                assert time.monotonic() < give_up, f"gave up at event {n}"
                try:
                    if conn is None:
                        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=15)
                    conn.request("POST", "/binge", body=body, headers={"Content-Type": "application/json",
                                                                        "Idempotency-Key": f"event-{n}"})
                    resp = conn.getresponse()
                    data = resp.read()
                except (OSError, http.client.HTTPException):
                    if conn is not None:
                        conn.close()
                    conn = None
                    self.resends += 1
                    time.sleep(0.02)
                    continue
                if resp.status == 202:
                    assert isinstance(orjson.loads(data)["queued"], int)
                    break
                self.unexpected.append((n, resp.status, data))
                self.resends += 1
            self.acked += 1
            if self.acked >= KILL_AFTER:
                self.halfway.set()
        if conn is not None:
            conn.close()


def wait_drained(port: int, timeout: float) -> dict:
    deadline = time.monotonic() + timeout
    counts: dict = {}
    while time.monotonic() < deadline:
        status, counts = request(port, "GET", "/maintenance/queue")
        assert status == 200, counts
        if counts["inflight"] == 0 and counts["unprocessed"] == 0:
            return counts
        time.sleep(0.1)
    raise AssertionError(f"the queue did not drain within {timeout}s: {counts}")


def test_nothing_acknowledged_is_lost_across_sigkill(tmp_path):
    cfg = durable_config(tmp_path)
    queue_dir = tmp_path / "queue"
    server = Server(cfg, tmp_path, "--durable", str(queue_dir), "--workers", "2", log_name="durable").start()
    try:
        client = Client(server.port)
        client.start()
        assert client.halfway.wait(60), f"only {client.acked} events acknowledged: {client.error}"

        first_pid = server.proc.pid
        server.kill(signal.SIGKILL)  # master and workers, mid-stream
        killed_at = client.acked
        assert server.proc.returncode == -signal.SIGKILL
        server.start()  # same port, same queue directory
        assert server.proc.pid != first_pid

        client.join(90)
        assert not client.is_alive(), f"client stuck after {client.acked} acknowledgements"
        assert client.error is None, repr(client.error)
        assert client.acked == N
        assert KILL_AFTER <= killed_at < N, "the kill did not happen mid-stream"
        assert client.resends >= 1, "the client never saw the crash"
        assert client.unexpected == []

        counts = wait_drained(server.port, 30)
        assert counts == {"inflight": 0, "unprocessed": 0, "failed": 0}
    finally:
        server.kill(signal.SIGKILL)

    files = sorted((tmp_path / "tee").glob("*.json"))
    bodies = [json.loads(p.read_text()) for p in files]
    ns = [b["n"] for b in bodies]
    missing = set(range(N)) - set(ns)
    duplicated = {n for n in ns if ns.count(n) > 1} if len(ns) != len(set(ns)) else set()
    assert not missing, f"{len(missing)} acknowledged event(s) never processed, e.g. {sorted(missing)[:10]}"
    assert not duplicated, f"event(s) with more than one tee file, e.g. {sorted(duplicated)[:10]}"
    assert set(ns) == set(range(N))
    assert len(files) == N

    conn = sqlite3.connect(tmp_path / "state.db")
    try:
        state = {k.split("/")[3]: json.loads(v)["value"]
                 for k, v in conn.execute("SELECT key, value FROM kv WHERE key NOT LIKE 'mark/%'")}
        marks = conn.execute("SELECT COUNT(*) FROM kv WHERE key LIKE 'mark/%'").fetchone()[0]
    finally:
        conn.close()
    # Events in flight at the crash are processed again; their dedupe marks keep them from counting twice.
    assert state == {"Count": N, "Sum": N * (N - 1) // 2, "Max": N - 1}
    assert marks == 3 * N
    # Each event shows the count right after its own: 1..N, each once, replayed events included (a
    # replay shows what the first delivery showed, not the count as it stands).
    shown = sorted(b["internal:aggregation:P"]["n:AggCount"]["value"] for b in bodies)
    assert shown == list(range(1, N + 1)), [c for c in shown if shown.count(c) > 1][:10]
    replayed = re.findall(r"re-queued (\d+) event", server.logs())
    leftovers = [p.name for p in (tmp_path / "tee").iterdir() if p.suffix != ".json"]
    print(f"killed after {killed_at} acks; {client.resends} re-send(s); replayed {replayed}; state {state}; "
          f"temporary files left by the crash: {leftovers}")


def test_failed_records_are_kept_and_bad_bodies_are_not_queued(tmp_path):
    cfg = write_config(tmp_path / "marks.json", config(
        {"annotator": {"name": "Mark", "annotations": [{"fieldKey": "seen", "value": "yes"}]}},
        {"tee": {"name": "Out", "outputConnectorRef": "Files"}},
        externals=(external("ExternalLocalFile", "Files", str(tmp_path / "tee")),)))
    queue_dir = tmp_path / "queue"
    server = Server(cfg, tmp_path, "--durable", str(queue_dir), "--workers", "1", log_name="marks").start()
    try:
        port = server.port
        assert post_json(port, [])[0] == 400
        assert post_json(port, [1])[0] == 422  # its only element is refused: nothing is queued
        assert request(port, "POST", "/binge", b"{nope")[0] == 400
        status, answer = post_json(port, {"n": 1})
        assert status == 202 and isinstance(answer["queued"], int)
        assert post_json(port, {"n": 2, "seen": "already"})[0] == 202
        assert post_json(port, {"n": 3})[0] == 202
        assert wait_drained(port, 20) == {"inflight": 0, "unprocessed": 0, "failed": 1}

        # A second daemon on the same queue directory refuses to run.
        other = Server(cfg, tmp_path, "--durable", str(queue_dir), log_name="other")
        with pytest.raises(RuntimeError, match="another agglo daemon is using the queue"):
            other.start(timeout=20)
        assert other.proc.returncode != 0
        assert request(port, "GET", "/healthz") == (200, {"status": "ok"})
    finally:
        server.kill(signal.SIGKILL)

    written = sorted(json.loads(p.read_text())["n"] for p in (tmp_path / "tee").glob("*.json"))
    assert written == [1, 3]
    conn = sqlite3.connect(queue_dir / "queue.db")
    try:
        [(body, errors)] = conn.execute("SELECT body, errors FROM failed").fetchall()
    finally:
        conn.close()
    assert orjson.loads(body) == {"n": 2, "seen": "already"}
    [err] = orjson.loads(errors)
    assert (err["pipeline"], err["process"]) == ("P", "Mark")
