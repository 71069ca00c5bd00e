"""The parts of the faulted config that are not key-value state: executables and entwine's ticker.

* Two executables, both shell scripts so a scenario costs milliseconds: a spawner
  (``doSync``) and an exec transform (``TransformMap``). Each appends a line
  ``<process call> <spawn|map> <record>`` to ``$AGGLO_FAULTS_EXEC_LOG`` before it
  answers: that log is how the suite sees how often each really ran.
* A real ticker (``TickerApp``) over HTTP, reached through the real ``TickerClient``;
  every scenario gets a fresh ticker state behind the same endpoint.

What "not duplicated" means for an executable. Running one is not transactional:
the suite cannot take back a run whose record then failed, and no dedupe mark
covers it. So the promise is about deliveries: an executable runs for a record
only inside a delivery of that record, at most once per delivery, and exactly
once in every delivery that settled the record. A second run therefore happens
only because an earlier delivery of the record failed (or because the platform
itself redelivers records that had succeeded, as Kinesis does behind a failed
one and ``agglo run`` does with the whole file).
"""

from __future__ import annotations

import pathlib
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, make_server

ENV_EXEC_LOG, ENV_CALL, ENV_OBJECTS = "AGGLO_FAULTS_EXEC_LOG", "AGGLO_FAULTS_CALL", "AGGLO_FAULTS_OBJECTS"
EXECUTABLES = ("spawn", "map")  # what each script writes in the log
SUB_STREAM = "5d0b8a8e-3f3c-4a53-9a52-0c4bde1d9a11"
KEY_FILE = "faults.pem"

# The record's "i" is read with the shell's own expansions: no process forked besides the script.
SPAWN = f"""#!/bin/sh
read -r event
i=${{event#*\\"i\\":}}
i=${{i%%[,\\}}]*}}
echo "${ENV_CALL} spawn $i" >> "${ENV_EXEC_LOG}"
echo "{{\\"spawned\\": $i}}"
"""
TENFOLD = f"""#!/bin/sh
read -r i
echo "${ENV_CALL} map $i" >> "${ENV_EXEC_LOG}"
echo $((i * 10))
"""


@dataclass
class Executables:
    spawn: str
    tenfold: str

    @property
    def allowed(self) -> frozenset[str]:
        return frozenset({self.spawn, self.tenfold})


def write_executables(directory: pathlib.Path) -> Executables:
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, text in (("spawn.sh", SPAWN), ("tenfold.sh", TENFOLD)):
        path = directory / name
        path.write_text(text)
        path.chmod(0o755)
        paths.append(str(path.resolve()))
    return Executables(*paths)


class TickerEndpoint:
    """One HTTP endpoint for a whole test; ``fresh`` puts a new, empty ticker behind it for each scenario."""

    def __init__(self) -> None:
        self.app: Any = None
        self.clock: Callable[[], int] | None = None

        class Quiet(WSGIRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

        self._server = make_server("127.0.0.1", 0, lambda env, start: self.app(env, start), handler_class=Quiet)
        self.endpoint = f"127.0.0.1:{self._server.server_port}"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def fresh(self, directory: pathlib.Path, clock: Callable[[], int] | None = None) -> None:
        from entwine_world import ed25519_pem

        from agglo_core.entwine.crypto import Signer
        from handlers.entwine.ticker import TickerApp
        from handlers.entwine.ticker_state import open_state

        state = open_state(f"sqlite:{directory}/ticker.db")
        self.app = TickerApp(state, Signer(ed25519_pem()), **({"clock": clock} if clock else {}))

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


@dataclass
class World:
    """What a config with executables and entwine needs besides its stores."""

    executables: Executables
    ticker: TickerEndpoint
    key: bytes

    @property
    def keys(self) -> dict[str, bytes]:
        return {KEY_FILE: self.key}


def extended_definitions(world: World) -> tuple[tuple[dict, ...], tuple[dict, ...]]:
    """(processes run before, processes run after the base config's), and the externals they add.

    The executables run first, so the tees keep their answers; entwine runs last, over the teed events.
    """
    from builders import external

    first = (
        {"spawner": {"name": "Spawn", "doSync": True, "job": {"runnable": {"pathToExec": world.executables.spawn}}}},
        {"transformer": {"name": "Tenfold", "forwardInputFields": True, "specs": [
            {"sourceField": "i", "targetField": "tenfold",
             "transformation": {"transformationType": "TransformMap",
                                "mapArgs": {"path": world.executables.tenfold}}}]}},
    )
    last = ({"entwine": {"name": "Chain", "streamStateStore": "State", "objectStore": "Objects", "pemPath": KEY_FILE,
                         "subStreamID": SUB_STREAM, "tickerEndpoint": world.ticker.endpoint, "tickerInterval": 3}},)
    return first + last, (external("ExternalObjectStore", "Objects", f"file:${{{ENV_OBJECTS}}}"),)


# --- what the executables and the chain show after a scenario ------------------------------------

@dataclass
class Call:
    """One ``Runtime.process`` call: a delivery of these records, and which of them it settled."""

    records: list[int]
    settled: set[int] = field(default_factory=set)


def exec_runs(log: pathlib.Path) -> list[tuple[int, str, int]]:
    if not log.exists():
        return []
    return [(int(c), what, int(i)) for c, what, i in (line.split() for line in log.read_text().splitlines())]


def exec_findings(calls: list[Call], runs: list[tuple[int, str, int]], records: int) -> tuple[list, list, int]:
    """(lost, duplicated, reruns) of the executables, as the module's docstring defines them."""
    lost, duplicated = [], []
    counts: dict[tuple[int, str, int], int] = {}
    for run in runs:
        counts[run] = counts.get(run, 0) + 1
    for what in EXECUTABLES:
        for i in range(records):
            ran = {c: n for (c, w, r), n in counts.items() if w == what and r == i}
            if not ran:
                lost.append(f"{what} never ran for record {i}")
            for c, n in ran.items():
                if c >= len(calls) or i not in calls[c].records:
                    duplicated.append(f"{what} ran for record {i} in call {c}, which did not deliver it")
                elif n > 1:
                    duplicated.append(f"{what} ran {n} times for record {i} in one delivery (call {c})")
            for c, call in enumerate(calls):
                if i in call.settled and c not in ran:
                    lost.append(f"call {c} settled record {i} without running {what}")
    return lost, duplicated, max(0, len(runs) - len(EXECUTABLES) * records)


def chain_of(state: Any, objects: Any, key: bytes, ticker_pem: str) -> dict[str, Any]:
    """The substream as the suite compares it: message uuids, objects pointed at, anchors, and its verification."""
    from agglo_core.effects import GetItems
    from agglo_core.entwine.crypto import Signer
    from agglo_core.processes.entwine import stream_keys
    from handlers.entwine.cli import verify_substream

    head_key, idx_prefix, _ = stream_keys(SUB_STREAM)
    [[head]] = state.perform([GetItems("State", (head_key,))])
    if head is None:
        return {"messages": [], "objects": [], "anchoredIdx": None, "broken": "no substream"}
    [messages] = state.perform([GetItems("State", tuple(f"{idx_prefix}{n}" for n in range(1, head["idx"] + 1)))])
    checked, broken = verify_substream(state, objects, SUB_STREAM, Signer(key).public_pem, ticker_pem)
    return {"messages": [m["uuid"] for m in messages], "objects": sorted(m["objectStoreKey"] for m in messages),
            "anchoredIdx": head["anchoredIdx"], "broken": broken, "checked": checked}


def chain_findings(want: dict[str, Any], got: dict[str, Any]) -> tuple[list, list, list]:
    """(lost, duplicated, different): every record's message in the chain exactly once, the chain verifying,
    every due anchor made. The order may differ from the once-only run's: redelivered records append later."""
    lost = [f"entwine message {u} missing" for u in set(want["messages"]) - set(got["messages"])]
    duplicated = [f"entwine message {u} appended {got['messages'].count(u)} times" for u in set(got["messages"])
                  if got["messages"].count(u) > 1]
    duplicated += [f"entwine message {u} extra" for u in set(got["messages"]) - set(want["messages"])]
    different = []
    if got["broken"] is not None:
        different.append(f"the substream does not verify: {got['broken']}")
    if got["objects"] != want["objects"]:
        different.append(f"entwine objects {got['objects']} instead of {want['objects']}")
    if got["anchoredIdx"] != want["anchoredIdx"]:
        different.append(f"anchored up to message {got['anchoredIdx']} instead of {want['anchoredIdx']}")
    return lost, duplicated, different

