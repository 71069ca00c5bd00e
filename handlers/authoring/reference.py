"""The README's process reference, written from the process specs, so the docs cannot drift from the code.

``python -m handlers.authoring.reference`` rewrites the part of README.md between
the markers; a test checks that the README holds exactly what this renders.
"""

from __future__ import annotations

import sys
from pathlib import Path

from agglo_core.processes import specs
from agglo_core.processes.spec import ExternalRef

BEGIN = "<!-- process reference: written from the process specs by `python -m handlers.authoring.reference` -->\n"
END = "<!-- end of process reference -->\n"


def process_reference() -> str:
    rows = ["| process | what it does | external systems it needs |", "|---|---|---|"]
    for kind, spec in specs().items():
        needs = "; ".join(f"`{r.field}`: {_needed(r)}" for r in spec.externals)
        rows.append(f"| `{kind}` | {spec.summary} | {needs or '—'} |")
    sections = [f"**{kind}** — {spec.doc}" for kind, spec in specs().items()]
    return "\n".join(rows) + "\n\n" + "\n".join(sections)


def _needed(ref: ExternalRef) -> str:
    can = ", ".join(sorted(ref.capabilities))
    if ref.external_type is None:
        return f"any external system whose connector can {can}"
    return f"{'an' if ref.what[0] in 'aeiou' else 'a'} {ref.what} (`{ref.external_type}`) that can {can}"


def with_reference(readme: str) -> str:
    """``readme`` with the text between the markers replaced by ``process_reference()``."""
    head, _, rest = readme.partition(BEGIN)
    _, found, tail = rest.partition(END)
    if not found:
        raise ValueError("README.md has no process reference markers")
    return f"{head}{BEGIN}{process_reference()}{END}{tail}"


def main() -> int:
    path = Path(__file__).resolve().parents[2] / "README.md"
    path.write_text(with_reference(path.read_text()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
