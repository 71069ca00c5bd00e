"""The core stays pure: no module under agglo_core/ may do I/O or read the clock, randomness or environment.

A static check walks every module's AST for forbidden imports, attribute uses and
builtin calls; a dynamic check imports the package in a fresh interpreter and
looks at what it dragged into ``sys.modules`` (cold start must stay small).
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
CORE = REPO / "agglo_core"

FORBIDDEN_MODULES = frozenset({
    "boto3", "botocore", "google", "redis", "requests", "urllib3", "httpx", "socket", "subprocess",
    "threading", "multiprocessing", "asyncio", "sqlite3", "functions_framework", "aws_lambda_powertools",
    "random", "secrets", "shutil", "tempfile", "io", "os", "sys", "pathlib", "time", "logging", "signal",
    "select", "selectors", "ctypes", "mmap", "glob", "fcntl",
})
"""Top-level module names: importing the module or anything under it is forbidden."""

FORBIDDEN_SUBMODULES = frozenset({"urllib.request", "http.client", "http.server"})
"""Dotted module names: importing exactly these (or anything under them) is forbidden."""

FORBIDDEN_ATTRIBUTES = frozenset({
    "time.time", "time.monotonic", "time.perf_counter", "time.sleep",
    "datetime.now", "datetime.utcnow", "datetime.today", "date.today",
    "uuid.uuid1", "uuid.uuid4",
    "os.environ", "os.getenv", "os.urandom", "os.system", "os.popen",
})
"""Matched against the dotted name of an attribute use (aliases resolved), as a whole or as a suffix."""

FORBIDDEN_BUILTINS = frozenset({"open", "input", "print", "exec", "eval", "compile", "__import__"})

CODE_GENERATORS = {"agglo_core/codegen.py": frozenset({"forbidden builtin call 'exec()'",
                                                       "forbidden builtin call 'compile()'"})}
"""The one module that turns generated source into functions, and exactly what it may do for that."""


def _module_violation(module: str) -> bool:
    if module.split(".")[0] in FORBIDDEN_MODULES:
        return True
    return any(module == m or module.startswith(m + ".") for m in FORBIDDEN_SUBMODULES)


def _attribute_violation(dotted: str) -> str | None:
    for bad in FORBIDDEN_ATTRIBUTES:
        if dotted == bad or dotted.endswith("." + bad):
            return bad
    return None


def _dotted(node: ast.expr) -> str | None:
    """``a.b.c`` for a chain of attributes on a name, else None."""
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if not isinstance(node, ast.Name):
        return None
    parts.append(node.id)
    return ".".join(reversed(parts))


def find_violations(source: str, filename: str) -> list[str]:
    """Every forbidden import, attribute use or builtin call in ``source``, as ``file:line: what 'name'``."""
    tree = ast.parse(source, filename=filename)
    found: list[str] = []
    aliases: dict[str, str] = {}  # local name -> the dotted name it was imported as

    def report(node: ast.AST, what: str, name: str) -> None:
        found.append(f"{filename}:{getattr(node, 'lineno', '?')}: {what} '{name}'")

    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                aliases[alias.asname or alias.name.split(".")[0]] = alias.name if alias.asname else \
                    alias.name.split(".")[0]
                if _module_violation(alias.name):
                    report(node, "forbidden import", alias.name)
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative imports stay inside agglo_core, which is checked file by file
                continue
            module = node.module or ""
            if _module_violation(module):
                report(node, "forbidden import", module)
            for alias in node.names:
                full = f"{module}.{alias.name}"
                aliases[alias.asname or alias.name] = full
                if not _module_violation(module) and _module_violation(full):
                    report(node, "forbidden import", full)
                elif (bad := _attribute_violation(full)) is not None:
                    report(node, "forbidden import of", full if full == bad else f"{full} ({bad})")
    # A module's own function of the same name (regex.compile) is not the builtin.
    own = {n.name for n in tree.body if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)}
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute):
            dotted = _dotted(node)
            if dotted is None:
                continue
            root, _, rest = dotted.partition(".")
            resolved = aliases.get(root, root) + ("." + rest if rest else "")
            bad = _attribute_violation(resolved) or _attribute_violation(dotted)
            if bad is not None:
                report(node, "forbidden use of", dotted if dotted == resolved else f"{dotted} ({resolved})")
            elif resolved.startswith("builtins.") and resolved.split(".")[1] in FORBIDDEN_BUILTINS:
                report(node, "forbidden use of", dotted)
        elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in FORBIDDEN_BUILTINS
              and node.func.id not in own):
            report(node, "forbidden builtin call", f"{node.func.id}()")
    # ast.walk is breadth-first; report in source order, each once (nested attributes can repeat a use).
    return sorted(set(found), key=lambda s: (int(s.split(":")[1]) if s.split(":")[1].isdigit() else 0, s))


def core_modules() -> list[Path]:
    files = sorted(CORE.rglob("*.py"))
    assert files, f"no modules found under {CORE}"
    return files


def test_checker_catches_violations() -> None:
    source = (
        "import os\n"
        "import json\n"
        "from datetime import datetime\n"
        "import uuid as u\n"
        "from urllib import request\n"
        "def f():\n"
        "    t = time.time()\n"
        "    print(t)\n"
        "    return datetime.now(), u.uuid4(), os.environ\n"
    )
    found = find_violations(source, "sample.py")
    text = "\n".join(found)
    assert "sample.py:1: forbidden import 'os'" in found, text
    assert "sample.py:5: forbidden import 'urllib.request'" in found, text
    assert "sample.py:7: forbidden use of 'time.time'" in found, text
    assert "sample.py:8: forbidden builtin call 'print()'" in found, text
    assert any(v.startswith("sample.py:9: forbidden use of 'datetime.now") for v in found), text
    assert any(v.startswith("sample.py:9: forbidden use of 'u.uuid4 (uuid.uuid4)") for v in found), text
    assert "sample.py:9: forbidden use of 'os.environ'" in found, text
    assert find_violations("code = compile('1', 'x', 'eval')\n", "gen.py") == ["gen.py:1: forbidden builtin call 'compile()'"]
    assert not any(":2:" in v or ":3:" in v or ":4:" in v for v in found), text  # json, datetime, uuid are fine

    # Allowed uses stay allowed (no false positives on the core's own idioms).
    clean = (
        "from datetime import UTC, datetime\n"
        "import uuid, hashlib, re, orjson\n"
        "from agglo_core.effects import Exec\n"
        "x = datetime.fromtimestamp(0, tz=UTC)\n"
        "y = uuid.UUID('6f0d5f3c-8e2a-5b7e-9c41-a9f0e4b1d2c3')\n"
        "def g(e): return e.input\n"
    )
    assert find_violations(clean, "clean.py") == []


def test_core_modules_do_no_io() -> None:
    violations = []
    for path in core_modules():
        rel = path.relative_to(REPO).as_posix()
        allowed = CODE_GENERATORS.get(rel, frozenset())
        violations.extend(v for v in find_violations(path.read_text(encoding="utf-8"), rel)
                          if v.split(": ", 1)[1] not in allowed)
    assert not violations, "agglo_core must stay pure:\n  " + "\n  ".join(violations)


COLD_START_FORBIDDEN = ("boto3", "botocore", "google", "redis", "requests", "sqlite3", "subprocess", "socket")

# What the core's two dependencies load by themselves (pydantic reads package metadata,
# which pulls in socket via email.utils); the core may add nothing forbidden to it.
BASELINE = "import orjson, pydantic\nclass M(pydantic.BaseModel):\n    x: int = 0\nM()"


def _modules_after(code: str) -> set[str]:
    probe = code + "\nimport sys; print(sorted(sys.modules))"
    proc = subprocess.run([sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return set(ast.literal_eval(proc.stdout.strip().splitlines()[-1]))


def test_import_of_core_stays_small() -> None:
    added = _modules_after("import agglo_core; agglo_core.compile_plan") - _modules_after(BASELINE)
    bad = sorted(m for m in added if m.split(".")[0].lstrip("_") in COLD_START_FORBIDDEN)
    assert not bad, f"importing agglo_core loads modules it must not (cold start): {bad}"


def test_only_codegen_compiles_code() -> None:
    """The allow-list is used: codegen does call both, and no other core module calls either."""
    found = find_violations((CORE / "codegen.py").read_text(encoding="utf-8"), "agglo_core/codegen.py")
    assert {v.split(": ", 1)[1] for v in found} == CODE_GENERATORS["agglo_core/codegen.py"]


def test_generated_plans_load_without_pydantic() -> None:
    """The IR, the code generator and the pipeline runtime import without the config models (cold start)."""
    loaded = _modules_after("import agglo_core.ir, agglo_core.codegen, agglo_core.pipeline, agglo_core.transforms\n"
                            "from agglo_core.ir import PlanIR")
    assert "pydantic" not in loaded and "agglo_core.config" not in loaded, sorted(
        m for m in loaded if m.startswith(("pydantic", "agglo_core")))
