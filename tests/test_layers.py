"""The dependency rules of the layout, checked on every module's imports (the README's Layout states them).

    agglo_core  <-  runtime layer  <-  entry points
                    (handlers.runtime, .sources, .connectors)
                          ^
                          tools and services (handlers.authoring, .daemons, .entwine), never imported by it

* ``agglo_core`` imports nothing of ``handlers``.
* The runtime layer imports only ``agglo_core`` and itself: it never reaches up to an entry point, a daemon,
  the entwine services or the authoring tools.
* The Lambda entry point imports only the runtime layer (its artefact holds nothing else).
* No module imports another module's private (``_``-prefixed) names.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
RUNTIME_LAYER = ("handlers.runtime", "handlers.sources", "handlers.connectors")


def _modules() -> dict[str, Path]:
    found = {}
    for package in ("agglo_core", "handlers"):
        for path in sorted((REPO / package).rglob("*.py")):
            parts = list(path.relative_to(REPO).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join(parts)] = path
    return found


MODULES = _modules()


def _imports(name: str, path: Path) -> list[tuple[str, list[str], int]]:
    """(module, imported names, line) for every import in the module, at any depth, relative ones resolved."""
    out = []
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out.extend((a.name, [], node.lineno) for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            out.append((base, [a.name for a in node.names], node.lineno))
    return out


def _under(module: str, prefixes: tuple[str, ...] | str) -> bool:
    prefixes = (prefixes,) if isinstance(prefixes, str) else prefixes
    return any(module == p or module.startswith(p + ".") for p in prefixes)


def _violations(allowed: tuple[str, ...], of: tuple[str, ...]) -> list[str]:
    bad = []
    for name, path in MODULES.items():
        if not _under(name, of):
            continue
        for module, _, line in _imports(name, path):
            if _under(module, ("agglo_core", "handlers")) and not _under(module, allowed):
                bad.append(f"{path.relative_to(REPO)}:{line} imports {module}")
    return bad


def test_the_core_imports_nothing_of_the_adapters() -> None:
    assert _violations(("agglo_core",), ("agglo_core",)) == []


def test_the_runtime_layer_never_imports_entry_points_daemons_or_tools() -> None:
    assert _violations(("agglo_core", *RUNTIME_LAYER), RUNTIME_LAYER) == []


def test_the_lambda_entry_point_needs_only_the_runtime_layer() -> None:
    assert _violations(("agglo_core", *RUNTIME_LAYER), ("handlers.aws_lambda",)) == []


def test_tools_and_services_never_import_an_entry_point() -> None:
    tools = ("handlers.authoring", "handlers.daemons", "handlers.entwine")
    assert _violations(("agglo_core", *RUNTIME_LAYER, *tools), tools) == []


def test_no_module_imports_another_modules_private_names() -> None:
    bad = []
    for name, path in MODULES.items():
        for module, names, line in _imports(name, path):
            if module != name and _under(module, ("agglo_core", "handlers")):
                bad.extend(f"{path.relative_to(REPO)}:{line} imports {module}.{n}" for n in names
                           if n.startswith("_") and not n.startswith("__"))
    assert bad == []


@pytest.mark.parametrize("package", ["handlers/runtime", "handlers/daemons", "handlers/entwine",
                                     "handlers/connectors", "handlers/sources", "handlers/authoring"])
def test_each_sub_package_says_what_it_is(package: str) -> None:
    init = REPO / package / "__init__.py"
    assert ast.get_docstring(ast.parse(init.read_text())), f"{init} needs a docstring"
