"""``docs/compiled`` holds what ``agglo compile --show`` prints, and ``--show`` needs no private key."""

from __future__ import annotations

import os
import pathlib
import shutil
import subprocess
import sys

from entwine_world import ed25519_pem

from handlers.authoring.compiled_docs import DOCS, listings

ROOT = pathlib.Path(__file__).resolve().parents[1]


def show(config: pathlib.Path, cwd: pathlib.Path) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items() if not k.startswith("AGGLO_")}
    return subprocess.run([sys.executable, "-m", "handlers.local", "compile", "-c", str(config), "--show"],
                          cwd=cwd, capture_output=True, text=True, timeout=120,
                          env={**base, "PYTHONPATH": str(ROOT)}, check=False)


def test_docs_compiled_holds_exactly_what_the_generator_writes() -> None:
    docs = ROOT / DOCS
    expected = listings()
    assert sorted(p.name for p in docs.iterdir()) == sorted(expected), \
        "run python -m handlers.authoring.compiled_docs"
    for name, text in expected.items():
        assert (docs / name).read_text(encoding="utf-8") == text, \
            f"{DOCS / name} is stale: run python -m handlers.authoring.compiled_docs"


def test_each_listing_is_what_compile_show_prints() -> None:
    config = ROOT / "pipelines" / "basic.json"
    result = show(config, ROOT)
    assert result.returncode == 0, result.stderr
    assert result.stdout == (ROOT / DOCS / "basic.py").read_text(encoding="utf-8")


def test_compile_show_needs_no_private_key(tmp_path: pathlib.Path) -> None:
    """entwine's pemPath names a file that is not there: a warning, and the same listing as with the key."""
    config = tmp_path / "entwine.json"
    shutil.copy(ROOT / "pipelines" / "entwine-a.json", config)
    without = show(config, tmp_path)
    assert without.returncode == 0, without.stderr
    assert "cannot read out/a.pem" in without.stderr
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "a.pem").write_bytes(ed25519_pem())
    with_key = show(config, tmp_path)
    assert with_key.returncode == 0, with_key.stderr
    assert with_key.stdout == without.stdout
    assert "def run_BingeA_" in without.stdout and "entwine" in without.stdout
