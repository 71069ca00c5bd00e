"""filter: drop the keys whose name matches ``regex`` (or, with ``keepMatched``, keep only those).

The config side (model, checks, lint, docs); the stage is ``agglo_core.stages.filter``.
"""

from __future__ import annotations

from collections.abc import Iterator

from pydantic import StrictBool, StrictStr

from agglo_core.config import ConfigModel
from agglo_core.processes.spec import CheckContext, Finding, LintContext, Problem, ProcessSpec
from agglo_core.stages import filter as stage
from agglo_core.validation import regex_problem


class Filter(ConfigModel):
    name: StrictStr = ""
    regex: StrictStr = ""
    keepMatched: StrictBool = False



def _check(d: Filter, ctx: CheckContext) -> Iterator[Problem]:
    if (problem := regex_problem(d.regex)) is not None:
        yield "regex", problem


def _lint(d: Filter, ctx: LintContext) -> Iterator[Finding]:
    from agglo_core.lint import matches_everything  # late: running a pipeline never loads lint

    if matches_everything(d.regex):
        effect = "keeps every field: it does nothing" if d.keepMatched else "drops every field of every event"
        yield Finding("regex", "regex-matches-everything", f"{d.regex!r} matches every key, so the filter {effect}")


_DOC = """\
drop the keys whose name matches `regex` (unanchored), at every
level of nesting including maps inside lists; with `keepMatched`, keep only the
matching keys (a kept map is filtered in turn, as in binge).

```json
{"filter": {"name": "DropSecrets", "regex": "^(password|token)$", "keepMatched": false}}
```
"""

SPEC = ProcessSpec(
    kind="filter", emit=stage.emit, doc=_DOC, proto_field=4, model=Filter, compile=stage.compile,
    summary="Drops the keys whose names match `regex` at every level of nesting (with `keepMatched`, keeps "
            "only those); `internal:` keys always survive.",
    check=_check, lint=_lint, conditions=lambda d: iter(()),
    describe=lambda d: [f"{'keep' if d.keepMatched else 'drop'} keys matching /{d.regex}/"],
)
