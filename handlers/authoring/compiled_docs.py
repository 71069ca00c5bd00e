"""``docs/compiled/``: what ``agglo compile --show`` prints for each config in ``pipelines/``, so it cannot drift.

``python -m handlers.authoring.compiled_docs`` writes ``docs/compiled/<config>.py``
for each ``pipelines/<config>.json`` and ``docs/compiled/README.md``, their index;
a test checks that the directory holds exactly what this writes.
"""

from __future__ import annotations

import sys
from pathlib import Path

from handlers.authoring.compile import compiled
from handlers.runtime.boot import read_config_file

ROOT = Path(__file__).resolve().parents[2]
DOCS = Path("docs") / "compiled"
"""Where the listings go, from the repository's root."""

INDEX_HEAD = """# Compiled pipelines

What `agglo compile -c pipelines/<config>.json --show` prints for each config in
`pipelines/`: the generated Python each run of pure processes becomes, and the
constants it names. Written by `python -m handlers.authoring.compiled_docs`; a
test checks these files equal what it writes.

| config | listing | pipelines | generated functions |
|---|---|---|---|
"""


def listings(root: Path = ROOT) -> dict[str, str]:
    """File name under ``docs/compiled`` -> its text, for every config in ``root/pipelines``."""
    out: dict[str, str] = {}
    rows = []
    for config in sorted((root / "pipelines").glob("*.json")):
        relative = config.relative_to(root).as_posix()
        _, plan, _ = compiled(read_config_file(str(config)))
        source = plan.source()
        out[f"{config.stem}.py"] = source
        functions = sum(line.startswith("def ") for line in source.splitlines())
        names = ", ".join(f"`{p.name}`" for p in plan.pipelines)
        rows.append(f"| [`{relative}`](../../{relative}) | [`{config.stem}.py`]({config.stem}.py) | {names} "
                    f"| {functions} |\n")
    out["README.md"] = INDEX_HEAD + "".join(rows)
    return out


def main() -> int:
    docs = ROOT / DOCS
    docs.mkdir(parents=True, exist_ok=True)
    written = listings()
    for stale in set(p.name for p in docs.iterdir()) - set(written):
        (docs / stale).unlink()  # a config that is gone takes its listing with it
    for name, text in written.items():
        (docs / name).write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
