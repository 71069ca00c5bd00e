"""A config validates where its secrets are not: an unreadable private key is a warning until it must run."""

from __future__ import annotations

import json
import pathlib
import shutil

from _servers import run_agglo
from entwine_world import rsa_pem

REPO = pathlib.Path(__file__).resolve().parents[2]


def _entwine_config(tmp_path: pathlib.Path) -> str:
    shutil.copy(REPO / "pipelines" / "entwine-a.json", tmp_path / "entwine.json")
    return "entwine.json"


def test_validate_warns_about_an_absent_key_and_strict_refuses(tmp_path: pathlib.Path) -> None:
    name = _entwine_config(tmp_path)
    done = run_agglo(["validate", "-c", name], cwd=tmp_path)
    lines = done.stdout.decode().splitlines()
    assert done.returncode == 0, done.stdout + done.stderr
    assert lines[0].startswith(f"{name}: warning: processDefinitions[1].entwine.pemPath: cannot read out/a.pem: ")
    assert "refuse to start without it" in lines[0]
    assert lines[1].startswith(f"{name}: ok (")
    strict = run_agglo(["validate", "--strict", "-c", name], cwd=tmp_path)
    assert strict.returncode == 1
    assert strict.stdout.decode().startswith(f"{name}: error: processDefinitions[1].entwine.pemPath: ")


def test_lint_reports_the_absent_key_as_a_warning(tmp_path: pathlib.Path) -> None:
    name = _entwine_config(tmp_path)
    done = run_agglo(["lint", "--format", "json", name], cwd=tmp_path)
    found = [(f["path"], f["level"], f["rule"]) for f in json.loads(done.stdout)]
    assert ("processDefinitions[1].entwine.pemPath", "warning", "key-unreadable") in found
    assert not any(level == "error" for _, level, _ in found)
    assert run_agglo(["lint", "--strict", name], cwd=tmp_path).returncode == 1


def test_run_still_refuses_to_start_without_the_key(tmp_path: pathlib.Path) -> None:
    name = _entwine_config(tmp_path)
    done = run_agglo(["run", "-c", name], cwd=tmp_path, stdin=b'{"n": 1}\n')
    assert done.returncode == 2
    assert b"processDefinitions[1].entwine.pemPath: cannot read out/a.pem" in done.stderr


def test_with_the_key_in_place_validate_is_clean(tmp_path: pathlib.Path) -> None:
    name = _entwine_config(tmp_path)
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "a.pem").write_bytes(rsa_pem("pkcs8"))
    done = run_agglo(["validate", "--strict", "-c", name], cwd=tmp_path)
    assert (done.returncode, done.stdout.decode().startswith(f"{name}: ok (")) == (0, True), done.stdout
