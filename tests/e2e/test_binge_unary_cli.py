"""binge's unary names through the real ``agglo`` command: lint's note, and fmt writing binge's enums."""

from __future__ import annotations

import json
import pathlib

from _servers import run_agglo, write_config
from builders import config

NOT_DONE = {"expression": {"unary": {"op": "Inversion", "rhs": {"variable": {"name": "done"}}}}}


def test_lint_notes_binge_unary_names_and_strict_still_passes(tmp_path: pathlib.Path) -> None:
    write_config(tmp_path / "c.json", config({"continuation": {"name": "C", "condition": NOT_DONE}}))
    done = run_agglo(["lint", "c.json"], cwd=tmp_path)
    assert done.returncode == 0, done.stderr.decode()
    assert done.stdout.decode().splitlines() == [
        "c.json: processDefinitions[0].continuation.condition.expression.unary.op: note: Inversion is binge's name "
        "for logical not ! (this reads !done): its unary names read the wrong way round, Inversion is logical "
        "not !, LogicalNot is bitwise not ~ [binge-unary-names]"]
    strict = run_agglo(["lint", "--strict", "--format", "json", "c.json"], cwd=tmp_path)
    assert strict.returncode == 0, strict.stderr.decode()
    [finding] = json.loads(strict.stdout)
    assert (finding["level"], finding["rule"]) == ("note", "binge-unary-names")


def test_fmt_turns_binge_enums_into_symbols_and_back(tmp_path: pathlib.Path) -> None:
    bitwise = {"expression": {"comparator": {"op": "Equal", "rhs": {"numeric": -1}, "lhs": {
        "expression": {"unary": {"op": "LogicalNot", "rhs": {"variable": {"name": "n"}}}}}}}}
    write_config(tmp_path / "c.json", config({"continuation": {"name": "C", "condition": NOT_DONE}},
                                             {"continuation": {"name": "D", "condition": bitwise}}))
    assert run_agglo(["fmt", "-w", "--conditions", "c.json"], cwd=tmp_path).returncode == 0
    texts = [d["continuation"]["condition"] for d in json.loads((tmp_path / "c.json").read_text())
             ["processDefinitions"]]
    assert texts == ["!done", "~n == -1"]
    assert run_agglo(["lint", "c.json"], cwd=tmp_path).stdout == b""  # text says what it does: no note
    assert run_agglo(["fmt", "-w", "--conditions", "--to", "ast", "c.json"], cwd=tmp_path).returncode == 0
    written = json.loads((tmp_path / "c.json").read_text())["processDefinitions"]
    assert [d["continuation"]["condition"] for d in written] == [NOT_DONE, bitwise]
